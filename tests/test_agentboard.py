"""AgentBoard's held-out Jericho and PDDL (envs/jericho.py, envs/pddl.py) on a small AgentBoard folder of our own
(tests/agentboard_fixture.py: an Inform 6 game compiled here, its labels, small PDDL problems): the expert reaches full
progress on every task through evaluate.py, a policy that stops early gets the progress worked out by hand, and
without the data both envs say in one line what is missing and where AgentBoard publishes it.

    python -m pytest -q tests/test_agentboard.py
"""
import json
import os
import subprocess
import sys

import pytest

import agentboard_fixture as F
from agent import run_episode
from envs import env_class, make_env, names

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return F.make(tmp_path_factory.mktemp("ab"))


@pytest.fixture
def ab(data, monkeypatch):
    monkeypatch.setenv("ATLAS_AGENTBOARD_DATA", data)
    return data


def act(action):
    return f"Thought:\nmy reason\n\nAction:\n{action}"


def scripted(turns):
    """A policy that plays `turns` in order (then nothing more: the test stops it with max_rounds)."""
    turns = list(turns)
    return lambda convs, envs, temperature=None: [act(turns.pop(0)) for _ in convs]


def evaluate(args, data=None, tmp=None):
    env = {k: v for k, v in os.environ.items() if k != "ATLAS_AGENTBOARD_DATA"}
    if data is not None:
        env["ATLAS_AGENTBOARD_DATA"] = data
    return subprocess.run([sys.executable, "evaluate.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def rows(path):
    return sorted((json.loads(line) for line in open(path)), key=lambda r: r["task_id"])


def test_facts_put_agentboard_in_the_papers_columns_and_pddlgym_under_other():
    import scores
    assert names("held-out") == ["academia", "sheet", "jericho", "pddl"] == scores.HELD_OUT
    facts = lambda n: (lambda c: (c.split, c.column, c.score, c.max_rounds, c.builtin))(env_class(n))
    assert facts("jericho") == ("held-out", "Jericho", "progress", 30, True)
    assert facts("pddl") == ("held-out", "PDDL", "progress", 30, True)
    assert facts("pddlgym") == (None, "PDDL (pddlgym)", "progress", 30, True)  # never the paper's PDDL


# ---------------------------------------------------------------- Jericho
def test_jericho_expert_reaches_full_progress_through_evaluate(data, tmp_path):
    out = tmp_path / "jericho.jsonl"
    run = evaluate(["--env", "jericho", "--policy", "expert", "--tasks", "0:2", "--output", str(out),
                    "--save-trajectories", str(tmp_path / "traj.jsonl")], data)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert [(r["item_id"], r["reward"], r["success"], r["rounds"], r["end"]) for r in rows(out)] == [
        ("jericho_0", 1.0, 1, 5, "done"), ("jericho_1", 1.0, 1, 2, "done")]
    got = sorted((json.loads(line) for line in open(tmp_path / "traj.jsonl")), key=lambda r: r["item_id"])
    first = [r["conversations"][2]["value"] for r in got]
    assert first[0] == ("Goal: Light the way into the cave north of the shore.\nObservation: Grey Shore - Waves "
                        "break on grey stones. An old chest sits above the tide line. A cave mouth opens to the north. "
                        "You can see a rusty key and an old chest here.")        # AgentBoard's tables (ours here)
    assert first[1] == "Goal: Find out how the key feels.\nObservation: Not written yet."  # the line's goal
    assert got[0]["conversations"][4]["value"].startswith("You pick up the rusty key. It is cold and wet.")


def test_jericho_partial_progress_by_hand(ab):
    """Subgoals: key taken, chest open, lamp lit, cave entered. North (too dark: 0), take key (1/4), open the chest
    (2/4), north again (still dark: 2/4), then the policy is stopped: 0.5, unsolved."""
    env = make_env("jericho")
    policy = scripted(["north", "take key. It looks useful", "open chest, then look inside", "north"])
    res = run_episode(env, policy, 0, max_rounds=4)
    assert (res["reward"], res["success"], res["end"], res["rounds"]) == (0.5, 0, "max_rounds", 4)
    said = [t["value"] for t in res["conversations"][4::2]]
    assert said[0].startswith("It is too dark to go north without a light.")
    assert said[1].startswith("You pick up the rusty key.")   # AgentBoard's clean-up sent "take key"
    assert said[2].startswith("The lid of the chest creaks open.")  # and "open chest"
    env.close()


def test_jericho_counts_one_subgoal_a_step_and_lists_actions(ab):
    env = make_env("jericho")
    env.reset(1)   # subgoals "rusty key" and "cold and wet": both are in the answer to "take key"
    assert env.step(act("take key"))[1:] == (0.5, False)
    assert env.step(act("check valid actions")) == (  # a game Jericho does not know has none (AgentBoard: the same)
        "You can take the following actions: check valid actions", 0.5, False)
    assert env.step(act("examine key"))[1:] == (1.0, True)
    assert env.parse_action("Action: " + " ".join(f"w{i}" for i in range(30))) == " ".join(f"w{i}" for i in range(20))
    assert env.parse_action("Thought: x\nAction: go north, quickly. Now") == "go north"
    env.close()


# ---------------------------------------------------------------- PDDL
def test_pddl_expert_reaches_full_progress_through_evaluate(data, tmp_path, monkeypatch):
    monkeypatch.setenv("ATLAS_AGENTBOARD_DATA", data)
    from envs.pddl import agentboard_problems
    order = [(g, os.path.basename(p)) for g, _, p, _ in agentboard_problems()]
    assert order == [("gripper", "prob01.pddl"), ("gripper", "prob02.pddl"), ("blockworld", "problem1.pddl"),
                     ("blockworld", "problem10.pddl"), ("blockworld", "problem2.pddl"), ("barman", "p01.pddl"),
                     ("tyreworld", "p01.pddl")]  # AgentBoard's game order, files by name as pddlgym sorts them
    out = tmp_path / "pddl.jsonl"
    # the data folder by flag; no --tasks: every task the folder holds is AgentBoard's test set
    run = evaluate(["--env", "pddl", "--agentboard-data", data, "--policy", "expert", "--output", str(out),
                    "--save-trajectories", str(tmp_path / "traj.jsonl")])
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert [(r["reward"], r["success"], r["end"]) for r in rows(out)] == [(1.0, 1, "done")] * F.N_PDDL
    tyre = next(json.loads(line) for line in open(tmp_path / "traj.jsonl") if '"pddl_6"' in line)
    assert tyre["conversations"][2]["value"] == (
        "Domain: tyreworld\nActions: close <container>; fetch <obj> <container>; open <container>\n"
        "Goal: (closed boot) (have r1) (have wrench)\n"
        "Facts that do not change: none\nObservation: (closed boot) (in r1 boot) (in wrench boot)")


def test_pddl_partial_progress_by_hand(ab):
    """blockworld problem1: b3 on b1, b2 on the table; goal (on b1 b2) (on b2 b3). Unstack b3, put it down, pick up
    b2, a stack that is not possible, stack b2 on b3: 1 of 2 goal atoms; then the policy is stopped: 0.5."""
    env = make_env("pddl")
    turns = ["unstack b3 from b1", "put it down: putdown b3", "pickup b2", "stack b1 on b2", "stack b2 b3"]
    res = run_episode(env, scripted(turns), 2, max_rounds=5)
    assert (res["reward"], res["success"], res["end"]) == (0.5, 0, "max_rounds")
    said = [t["value"] for t in res["conversations"][4::2]]
    assert said[3] == '"stack b1 b2" is not possible now and changes nothing; check valid actions.'
    assert said[4] == "(arm-empty) (clear b1) (clear b2) (on b2 b3) (on-table b1) (on-table b3)"
    assert env.step(act("fly to the moon"))[0].startswith('"fly to the moon" is not an action of this domain')
    assert env.step(act("check valid actions"))[0] == (
        "Valid actions: pickup b1, unstack b2 b3, check valid actions, look around.")
    env.close()


# ---------------------------------------------------------------- without the data
def test_without_the_data_both_say_what_is_missing_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("ATLAS_AGENTBOARD_DATA", raising=False)
    for name in ("jericho", "pddl"):
        with pytest.raises(ValueError, match=r"huggingface\.co/datasets/hkust-nlp/agentboard") as e:
            make_env(name)
        assert "\n" not in str(e.value) and str(e.value).startswith(f"{name}: ")
    only = F.make(tmp_path / "partial", jericho=False)   # PDDL's files, no Jericho games
    monkeypatch.setenv("ATLAS_AGENTBOARD_DATA", only)
    with pytest.raises(ValueError, match=r"jericho: .*jericho/test\.jsonl not found: Jericho's labels"):
        make_env("jericho")
    run = evaluate(["--env", "pddl", "--policy", "expert", "--tasks", "0:1", "--output", str(tmp_path / "x.jsonl")])
    assert run.returncode != 0 and run.stderr.strip().count("\n") == 0, run.stderr
    assert "ATLAS_AGENTBOARD_DATA" in run.stderr and "hkust-nlp/agentboard" in run.stderr
