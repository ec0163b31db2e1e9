"""Built-in TextCraft (held-in; recipes from minecraft-data) and pddlgym (the offline PDDL stand-in; pddlgym's
problems, pyperplan; AgentBoard's PDDL is tests/test_agentboard.py)
environments and their experts.

    python -m pytest -q tests/test_envs_textcraft_pddl.py
"""
import collections
import os
import re
import subprocess
import sys

import pytest

from agent import ExpertPolicy, run_episode, run_episodes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TURN = re.compile(r"^Thought:\n[^\n].*\n\nAction:\n[^\n]+$", re.S)


def act(action):
    return f"Thought:\nmy reason\n\nAction:\n{action}"


def load_test_ids(name):
    return [int(x) for x in open(os.path.join(ROOT, "data", f"{name}_test_ids.txt")) if x.strip()]


# ---------------------------------------------------------------- TextCraft
@pytest.fixture(scope="module")
def tc():
    pytest.importorskip("minecraft_data")
    from envs.textcraft import TextCraftEnv
    return TextCraftEnv()


def test_textcraft_recipes_resolve(tc):
    """Every recipe ingredient is a base item, a craftable item or a generic tag with a craftable member; every goal
    of the 544-task schedule is crafted from an empty inventory by executing the expert's plan."""
    bk = tc.book
    for item, recipes in bk.recipes.items():
        for _, ins in recipes:
            for name, count in ins:
                assert count >= 1
                assert (name in bk.base or name in bk.recipes
                        or (name in bk.tags and any(m in bk.recipes or m in bk.base for m in bk.tags[name]))), name
    assert {"planks", "wooden_slab", "wool"} == set(bk.tags) and "oak_logs" in bk.base and "planks" not in bk.base
    results = list(run_episodes(lambda: type(tc)(), ExpertPolicy(), [{"task_id": t} for t in range(544)]))
    assert all(r["success"] and r["rounds"] <= 20 for r in results), [r["task_id"] for r in results
                                                                         if not r["success"]]


def test_textcraft_goals_follow_agentgym_depth_mix(tc):
    from envs.textcraft import DEPTH_WEIGHTS, goal_of
    depths = collections.Counter(tc.book.min_depth(goal_of(t)) for t in range(544))
    assert depths == collections.Counter(DEPTH_WEIGHTS) == collections.Counter({1: 125, 2: 291, 3: 117, 4: 11})
    test = collections.Counter(tc.book.min_depth(goal_of(t)) for t in load_test_ids("textcraft"))
    assert test == {1: 23, 2: 53, 3: 22, 4: 2}
    first = tc.reset(0)
    assert first.startswith("Crafting commands:\ncraft ") and re.search(r"\n\nGoal: craft [a-z ]+\.$", first)


def test_textcraft_server_rules_and_texts(tc):
    """AgentGym's server answers, word for word, including its odd ones (ids with "minecraft:", a dataclass repr)."""
    tc.reset(0)
    said = lambda a: tc.step(act(a))[0]
    assert said("inventory") == "Inventory: You are not carrying anything."
    assert said("get 2 oak logs") == "Got 2 oak logs"
    assert said("get 1 oak planks") == "Could not find oak planks"          # craftable: cannot be fetched
    assert said("get 1 planks") == "Could not find planks"                  # a generic tag
    assert said("get 1 unobtainium") == "Could not find unobtainium"
    assert said("get oak logs") == "Could not execute get oak logs"          # no count
    assert said("craft 4 oak planks using oak logs") == "Wrong item format: oak logs"
    assert said("craft 4 oak planks using 3 oak logs") == "Could not find enough items to craft minecraft:oak_planks"
    assert said("craft 4 oak planks using 1 oak logs") == "Crafted 4 minecraft:oak_planks"
    assert said("inventory") == "Inventory: [oak logs] (1) [oak planks] (4) "
    # a generic ingredient must be paid with a kind of it: "planks" itself is never held
    assert said("craft 4 stick using 2 planks") == "Could not find enough items to craft minecraft:stick"
    assert said("craft 4 stick using 3 oak planks") == (
        "Could not find a valid recipe for ItemTagWithCount(item_tag=ItemTag(tag=None, "
        "item_id='minecraft:stick'), count=4)")
    assert said("craft 4 stick using 2 oak planks") == "Crafted 4 minecraft:stick"
    assert said("inventory") == "Inventory: [oak logs] (1) [oak planks] (2) [stick] (4) "
    obs, reward, done = tc.step("Thought:\nhmm\n\nAction:\ndance")
    assert (obs, reward, done) == ("Could not execute dance", 0.0, False)
    for junk in ["", "Action:", "\x00" * 20, "craft using", "get -1 oak logs", "Action: craft 1 x using 1 y, z"]:
        obs, reward, done = tc.step(junk)
        assert isinstance(obs, str) and reward == 0.0 and not done
    # AgentGym's client keeps only letters, digits, commas and spaces after the LAST "Action:"
    assert tc.step("Action: x\nAction: get 1 oak_log!")[0] == "Could not find oaklog"
    assert tc.step("Thought: Action: no\nAction:\n  get   1   oak log  ")[0] == "Got 1 oak log"


def test_textcraft_goal_gives_reward_one_and_ends(tc):
    from envs.textcraft import goal_of, plan, command
    t = next(t for t in range(544) if goal_of(t) == "crafting_table")
    tc.reset(t)
    steps = plan(tc.book, tc.goal, {})
    outs = [tc.step(act(f"get {s[2]} {s[1].replace('_', ' ')}" if s[0] == "get" else command(*s[1:])))
            for s in steps]
    assert [r for _, r, _ in outs] == [0.0] * (len(steps) - 1) + [1.0]
    assert [d for _, _, d in outs] == [False] * (len(steps) - 1) + [True]
    assert outs[-1][0] == "Crafted 1 minecraft:crafting_table"


def first_observations_in_subprocess(name, tasks, seed):
    code = (f"import json; from envs import make_env; e = make_env({name!r}); "
            f"print(json.dumps([e.reset(t) for t in {tasks!r}]))")
    env = dict(os.environ, PYTHONHASHSEED=str(seed))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("name,tasks", [("textcraft", [0, 1, 2, 57, 99, 300]), ("pddlgym", [0, 25, 70, 130])])
def test_first_observations_do_not_depend_on_hash_seed(name, tasks):
    pytest.importorskip("minecraft_data" if name == "textcraft" else "pyperplan")
    a, b = (first_observations_in_subprocess(name, tasks, seed) for seed in (1, 2))
    assert a == b and len(a) > 100


def test_textcraft_expert_solves_every_test_id(tc):
    ids = load_test_ids("textcraft")
    results = list(run_episodes(lambda: type(tc)(), ExpertPolicy(), [{"task_id": i} for i in ids]))
    assert sum(r["success"] for r in results) / len(ids) >= 0.98
    for r in results:
        assert r["format_errors"] == 0 and all(TURN.match(t["value"]) for t in r["conversations"][3::2])


def test_textcraft_bundled_data_replays_and_is_disjoint_from_test_ids(tc):
    from trajectory import read_records
    recs = read_records(os.path.join(ROOT, "data", "textcraft_train.jsonl"))
    assert len(recs) == 200
    ids = {int(r["item_id"].rsplit("_", 1)[1]) for r in recs}
    assert not ids & set(load_test_ids("textcraft")) and len(load_test_ids("textcraft")) == 100
    never = lambda convs, envs, temperature=None: [None] * len(convs)
    for rec in recs:
        conv = rec["conversations"]
        res = run_episode(tc, never, int(rec["item_id"].rsplit("_", 1)[1]), replay=[t["value"] for t in conv[3::2]])
        assert res["conversations"] == conv, rec["item_id"]
        assert res["success"] == 1 and res["end"] == "done", rec["item_id"]


# ---------------------------------------------------------------- PDDL
@pytest.fixture(scope="module")
def pd():
    pytest.importorskip("pyperplan")
    from envs.pddl import PDDLGymEnv
    return PDDLGymEnv()


def test_pddl_progress_rate_gripper(pd):
    """gripper prob01: 4 balls in rooma, goal all in roomb. Progress = best share of goal atoms so far."""
    from envs.pddl import problem_of
    assert problem_of(0) == ("gripper", "gripper/prob01.pddl")
    first = pd.reset(0)
    assert first == ("Domain: gripper\nGoal: ball1 is in roomb. ball2 is in roomb. ball3 is in roomb. ball4 is in "
                     "roomb.\nObservation: ball1 is in rooma. ball2 is in rooma. ball3 is in rooma. ball4 is in "
                     "rooma. Robby is in rooma. The left gripper is free. The right gripper is free.")
    steps = [("pick ball1 in rooma with left", 0.0), ("pick ball2 in rooma with right", 0.0),
             ("move from rooma to roomb", 0.0), ("drop ball1 in roomb with left", 0.25),
             ("drop ball2 in roomb with right", 0.5),
             ("pick ball1 in roomb with left", 0.5),   # now only 1 of 4 holds; the progress rate keeps the best
             ("drop ball1 in roomb with left", 0.5), ("move from roomb to rooma", 0.5)]
    for action, progress in steps:
        obs, reward, done = pd.step(act(action))
        assert reward == progress == pd.progress and not done, action
    assert obs == ("ball1 is in roomb. ball2 is in roomb. ball3 is in rooma. ball4 is in rooma. Robby is in rooma. "
                   "The left gripper is free. The right gripper is free.")
    for action, progress in [("pick ball3 in rooma with left", 0.5), ("pick ball4 in rooma with right", 0.5),
                             ("move from rooma to roomb", 0.5), ("drop ball3 in roomb with left", 0.75)]:
        assert pd.step(act(action))[1] == progress
    assert pd.step(act("drop ball4 in roomb with right")) == (
        "ball1 is in roomb. ball2 is in roomb. ball3 is in roomb. ball4 is in roomb. Robby is in roomb. "
        "The left gripper is free. The right gripper is free.", 1.0, True)


def test_pddl_progress_rate_blocksworld(pd):
    """blocks/problem1: a, b, c, d on the table; goal d on c, c on b, b on a."""
    from envs.pddl import problem_of
    t = next(t for t in pd.task_ids() if problem_of(t) == ("blocksworld", "blocks/problem1.pddl"))
    first = pd.reset(t)
    assert "Goal: b is on a. c is on b. d is on c." in first
    for action, progress in [("pick up b", 0), ("stack b on a", 1 / 3), ("pick up c", 1 / 3),
                             ("stack c on b", 2 / 3), ("unstack c from b", 2 / 3), ("stack c on b", 2 / 3),
                             ("pick up d", 2 / 3)]:
        assert pd.step(act(action))[1] == pytest.approx(progress), action
    assert pd.step(act("stack d on c"))[1:] == (1.0, True)


def test_pddl_invalid_actions_explain_and_change_nothing(pd):
    before = pd.reset(0)
    state = pd.state
    obs, reward, done = pd.step(act("fly to the moon"))
    assert obs.startswith('"fly to the moon" is not an action of this domain. The actions are: move from <room> to '
                          '<room>; pick <ball> in <room> with <gripper>;')
    assert pd.step(act("pick ball9 in rooma with left"))[0].endswith("check the names of the objects.")
    assert pd.step(act("drop ball1 in rooma with left")) == (
        "You cannot drop ball1 in rooma with left now: these conditions do not hold: Robby carries ball1 in the "
        "left gripper.", 0.0, False)
    for junk in ["", "Action:", "\x00" * 30, "Action: pick", "Action: move from to"]:
        obs, reward, done = pd.step(junk)
        assert isinstance(obs, str) and reward == 0.0 and not done
    assert pd.state == state
    obs = pd.step(act("check valid actions"))[0]
    assert obs.startswith("Valid actions: ") and "pick ball1 in rooma with left" in obs and "drop" not in obs
    assert pd.reset(0) == before


def test_pddl_expert_solves_test_ids(pd):
    """The full test set is measured with evaluate.py (data/README.md); here a spread of fast ones per domain."""
    from envs.pddl import problem_of
    ids = load_test_ids("pddlgym")
    assert {problem_of(t)[0] for t in ids} == {"gripper", "blocksworld", "ferry"}
    folder = lambda t: problem_of(t)[1].split("/")[0]
    pick = [t for t in ids if folder(t) in ("blocks", "blocks_test")]                    # ~0.1 s each
    pick += [t for t in ids if folder(t).startswith("gripper")][:3]                      # prob01-03
    pick += [t for t in ids if folder(t) == "manyferry"][:3]                             # ~1 s each
    assert len(pick) == 16
    results = list(run_episodes(lambda: type(pd)(), ExpertPolicy(), [{"task_id": t} for t in pick], concurrency=1))
    assert all(r["success"] and r["reward"] == 1.0 for r in results), [r["task_id"] for r in results]
    assert all(TURN.match(t["value"]) for r in results for t in r["conversations"][3::2])


# ---------------------------------------------------------------- over HTTP
@pytest.mark.parametrize("name,tasks", [("textcraft", [0, 2, 77]), ("pddlgym", [0])])
def test_http_server_gives_identical_episodes(name, tasks):
    pytest.importorskip("minecraft_data" if name == "textcraft" else "pyperplan")
    from envs import make_env
    from envs.serve import start

    server, url = start(name)
    try:
        local = make_env(name)
        for t in tasks:
            a = run_episode(local, ExpertPolicy(), t)
            turns = [x["value"] for x in a["conversations"][3::2]]
            remote = make_env(name, server=url)
            replay = lambda convs, envs, temperature=None: [None] * len(convs)
            b = run_episode(remote, replay, t, replay=turns)
            remote.close()
            assert b["conversations"] == a["conversations"], (name, t)
            assert (b["reward"], b["success"], b["rounds"]) == (a["reward"], a["success"], a["rounds"]), (name, t)
    finally:
        server.shutdown()
