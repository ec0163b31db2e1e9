"""The seam for a new environment stays honest: a copy of the repository gets a toy environment as ONE new file
(envs/toy.py) and ONE registry line (envs/__init__.py), nothing else changes, and the copy's evaluate.py runs it
with the expert, with the toy's own round limit, success rule and action parsing.

    python -m pytest -q tests/test_fork_env.py
"""
import difflib
import hashlib
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A forker's first environment: reach the number N = task id + 1 from 0 with "+1" / "-1". Its parsing is its own
# (the LAST "Action:" of the turn), and its expert writes a turn that only that rule reads right: AgentGym's
# first_action would send "wait\nAction: +1", which the toy does not know.
TOY = '''"""Toy: reach the number N (task id + 1) from 0 with the actions "+1" and "-1"."""
from envs.base import Env


class ToyEnv(Env):
    name, max_rounds = "toy", 4  # split None: not one of the paper's tables

    @staticmethod
    def parse_action(text):
        return text.rsplit("Action:", 1)[-1].strip()  # the LAST "Action:" of the turn

    def task_ids(self):
        return range(100)

    def instruction(self):
        return "Reach the number N from 0. Answer with a Thought, then Action: +1 or Action: -1."

    def reset(self, task_id):
        self.target, self.at = int(task_id) + 1, 0
        return f"You are at 0. Reach {self.target}."

    def step(self, text):
        action = self.parse_action(text)
        if action not in ("+1", "-1"):
            return f"Unknown action {action!r}: use +1 or -1.", 0.0, False
        self.at += int(action)
        done = self.at == self.target
        return f"You are at {self.at}.", float(done), done

    def expert_turn(self):
        move = "+1" if self.at < self.target else "-1"
        return f"Thought:\\nI am at {self.at}; the goal is {self.target}.\\n\\nAction: wait\\nAction: {move}"
'''
REGISTRY_LINE = '    "toy": "envs.toy:ToyEnv",\n'


def tree_hashes(root, paths):
    return {p: hashlib.sha256(open(os.path.join(root, p), "rb").read()).hexdigest() for p in paths}


def fork(tmp_path):
    """A copy of the working tree's tracked and unignored files, plus the toy env; returns the copy's folder."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    files = sorted(p for p in listed if p and os.path.isfile(os.path.join(ROOT, p)))
    assert "envs/__init__.py" in files and "evaluate.py" in files and "envs/toy.py" not in files
    copy = tmp_path / "repo"
    for p in files:
        os.makedirs(os.path.dirname(copy / p), exist_ok=True)
        shutil.copyfile(os.path.join(ROOT, p), copy / p)
    before = tree_hashes(ROOT, files)
    (copy / "envs" / "toy.py").write_text(TOY)
    init = (copy / "envs" / "__init__.py").read_text()
    lines = init.splitlines(keepends=True)
    end = lines.index("}\n", next(i for i, line in enumerate(lines) if line.startswith("REGISTRY = {")))
    (copy / "envs" / "__init__.py").write_text("".join(lines[:end] + [REGISTRY_LINE] + lines[end:]))

    # the fork is one new file and one added line: every other file of the copy is the original, byte for byte
    after = tree_hashes(copy, files)
    assert [p for p in files if after[p] != before[p]] == ["envs/__init__.py"]
    diff = [d for d in difflib.ndiff(lines, (copy / "envs" / "__init__.py").read_text().splitlines(keepends=True))
            if d[0] in "+-"]
    assert diff == ["+ " + REGISTRY_LINE]
    return copy


def run_in(copy, *args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the copy's modules, not this checkout's
    out = subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return out.stdout


def test_a_toy_env_is_one_file_and_one_registry_line(tmp_path):
    copy = fork(tmp_path)
    facts = json.loads(run_in(copy, "-c", (
        "import json, envs; c = envs.env_class('toy'); print(json.dumps({"
        "'names': envs.names(), 'held_in': envs.names('held-in'), 'builtin': list(envs.BUILTIN), "
        "'parsed': c.parse_action('Action: wait\\nAction: -1'), 'column': c.column, 'split': c.split, "
        "'success': [envs.success('toy', 1.0), envs.success('toy', 0.5)], 'file': envs.protocol.__file__}))")))
    assert facts["file"] == str(copy / "envs" / "protocol.py")  # the copy's code ran, not this checkout's
    assert facts["names"][-1] == "toy" and "toy" not in facts["held_in"] and "toy" in facts["builtin"]
    assert facts["parsed"] == "-1" and facts["column"] == "Toy" and facts["split"] is None
    assert facts["success"] == [True, False]

    # the copy's evaluate.py runs it unchanged: the expert solves tasks 0..2 (targets 1..3) within 4 rounds ...
    out = tmp_path / "toy.jsonl"
    run_in(copy, "evaluate.py", "--env", "toy", "--policy", "expert", "--tasks", "0:3", "--output", str(out))
    rows = sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda r: r["task_id"])
    assert [r["item_id"] for r in rows] == ["toy_0", "toy_1", "toy_2"]
    assert all(r["success"] == 1 and r["reward"] == 1.0 and r["end"] == "done" for r in rows), rows
    assert [r["rounds"] for r in rows] == [1, 2, 3] and all(r["format_errors"] == 0 for r in rows)
    # ... and a task that needs more than the toy's max_rounds (target 11) stops at that limit, unsolved
    out = tmp_path / "toy_far.jsonl"
    run_in(copy, "evaluate.py", "--env", "toy", "--policy", "expert", "--tasks", "10:11", "--output", str(out))
    (far,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (far["rounds"], far["end"], far["success"], far["reward"]) == (4, "max_rounds", 0, 0.0)
