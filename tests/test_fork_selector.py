"""The seam for a new selector (docs/FORKING.md): a fork writes its selector as ONE new file, a function from a
record to its chosen steps plus the shared scaffold (runs.open_output, trajectory.with_selection), and runs it
through train.py, evaluate.py and the report without editing any other file; the report gives it rows of its own,
named from its records' `selection` (method, ratio), in Table 1 and Table 3.

The test copies the repository's tracked files, adds the toy selector there, checks that no other file of the copy
differs from the repository, and runs the copy's stages in subprocesses on a tiny model."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

from tests.tiny import make_records, save_tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable

# The whole selector a fork writes: the first steps of each trajectory are critical, within the paper's budget.
TOY_SELECTOR = '''"""Toy selector: the first m % of each trajectory's steps are its critical steps."""
import argparse

import runs
import trajectory


def choose(rec, ratio):
    steps = trajectory.step_indices(rec)
    return steps[:trajectory.budget(len(steps), ratio)]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--ratio", type=float, default=0.3)
    args = ap.parse_args()
    out = runs.open_output(args.output, vars(args), ["ratio"], inputs=[args.input])
    for rec in trajectory.read_records(args.input):
        if rec["item_id"] not in out.done:
            out.append(trajectory.with_selection(rec, choose(rec, args.ratio),
                                                 {"method": "toy", "ratio": args.ratio, "model": None}))
    out.close()
'''


def tracked_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and os.path.isfile(os.path.join(ROOT, p))]


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def copy_repo(dest):
    files = tracked_files()
    for rel in files:
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, rel), os.path.join(dest, rel))
    return files


def run(cwd, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([PY, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, (args, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout


def test_toy_selector_is_one_file_through_train_evaluate_and_report(tmp_path):
    repo = tmp_path / "fork"
    files = copy_repo(repo)
    (repo / "toy_select.py").write_text(TOY_SELECTOR)
    # one new file, nothing else edited
    changed = [rel for rel in files if digest(repo / rel) != digest(os.path.join(ROOT, rel))]
    added = sorted(set(os.path.relpath(os.path.join(d, n), repo) for d, _, ns in os.walk(repo) for n in ns)
                   - set(files))
    assert changed == [] and added == ["toy_select.py"], (changed, added)

    model = save_tiny(tmp_path / "base", "qwen")
    data = tmp_path / "expert.jsonl"  # short AgentGym-style trajectories (the maze's fill a tiny model's context)
    data.write_text("".join(json.dumps(r) + "\n" for r in make_records(4, seed=7, words=(3, 10), min_steps=3)))
    sel = tmp_path / "toy.jsonl"
    run(repo, "toy_select.py", "--input", str(data), "--output", str(sel))
    recs = [json.loads(line) for line in sel.read_text().splitlines()]
    assert len(recs) == 4 and all(r["selection"]["method"] == "toy" for r in recs)
    for r in recs:  # the first steps, within the budget, and the loss flags on exactly them
        steps = r["steps"]
        k = max(1, int(0.3 * len(steps) + 1e-9))
        assert r["critical_steps"] == steps[:k]
        assert [i for i, t in enumerate(r["conversations"]) if t.get("loss")] == r["critical_steps"]

    out = tmp_path / "train"
    run(repo, "train.py", "--data", str(sel), "--model", model, "--output", str(out), "--epochs", "1",
        "--batch-size", "4", "--micro-batch-size", "2", "--max-length", "2048", "--dtype", "float32")
    kept = json.loads((out / "final" / "selection.json").read_text())
    assert (kept["method"], kept["ratio"], kept["n_records"]) == ("toy", 0.3, 4)

    res = tmp_path / "toy_maze.jsonl"  # no --label: the row is named from the model's selection
    run(repo, "evaluate.py", "--env", "maze", "--policy", "hf", "--model", str(out / "final"), "--tasks", "0:2",
        "--max-new-tokens", "8", "--max-context", "2048", "--dtype", "float32", "--output", str(res))
    rows = [json.loads(line) for line in res.read_text().splitlines()]
    assert len(rows) == 2 and {r["label"] for r in rows} == {"toy@0.3"}
    assert all(r["selection"]["method"] == "toy" for r in rows)

    text = run(repo, "report.py", str(res), "--report-png", str(tmp_path / "t.png"))
    table1 = text.split("Table 1")[1].split("\nTable")[0]
    table3 = text.split("Table 3")[1]
    assert "toy@0.3" in table1 and "Toy" in table3 and "30%" in table3.split("Toy")[1].splitlines()[0], text
    assert "outside the --label convention" not in text
