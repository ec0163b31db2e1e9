"""agent.py and evaluate.py: the openai policy against a stub server that plays the expert reaches the expert's
score, malformed model output is counted and never crashes a run, an unreachable model server stops the run fast
with a clear message, evaluate.py is resumable and writes valid AgentTraj-L records, replay of expert prefixes,
the hf policy's batching, and the Table-1 report."""
import json
import os
import time

import pytest

import agent
import evaluate
from agent import ExpertPolicy, OpenAIPolicy, run_episode, run_episodes
from envs import make_env
from tests import expert_server
from trajectory import read_records


def strip(res):
    return {k: v for k, v in res.items() if k not in ("seconds",)}


def expert_results(name, ids):
    return {r["item_id"]: r for r in run_episodes(lambda: make_env(name), ExpertPolicy(),
                                                  [{"task_id": i} for i in ids], concurrency=1)}


@pytest.mark.parametrize("name,ids", [("maze", range(0, 25, 3)), ("wordle", range(0, 8))])
def test_openai_policy_on_expert_stub_matches_expert(name, ids):
    server, url = expert_server.start(name, ids)
    try:
        policy = OpenAIPolicy("stub", url, timeout=30)
        got = {r["item_id"]: r for r in run_episodes(lambda: make_env(name), policy,
                                                     [{"task_id": i} for i in ids], concurrency=4)}
    finally:
        server.shutdown()
    want = expert_results(name, ids)
    assert set(got) == set(want)
    for k in want:
        assert got[k]["conversations"] == want[k]["conversations"], k
        assert got[k]["reward"] == want[k]["reward"] and got[k]["success"] == 1
    assert sum(r["reward"] for r in got.values()) == sum(r["reward"] for r in want.values())


def test_malformed_model_output_is_counted_not_fatal():
    ids = list(range(6))
    server, url = expert_server.start("maze", ids, garbage_every=3)
    try:
        res = list(run_episodes(lambda: make_env("maze"), OpenAIPolicy("stub", url, timeout=30),
                                [{"task_id": i} for i in ids], concurrency=3))
    finally:
        server.shutdown()
    assert len(res) == len(ids)
    bad = sum(r["format_errors"] for r in res)
    turns = sum(r["rounds"] for r in res)
    assert bad >= turns // 3 - 1 and bad > 0  # every 3rd answer had no "Action:"
    for r in res:
        garbage = [t for t in r["conversations"][3::2] if "Action:" not in t["value"]]
        assert len(garbage) == r["format_errors"]
        assert r["end"] in ("done", "max_rounds")


def test_policy_exception_ends_only_that_episode():
    class Flaky:
        def __call__(self, convs, envs, temperature=None):
            return [ValueError("bad response") if env.pos == (1, 1) else env.expert_turn() for env in envs]

    res = {r["task_id"]: r for r in run_episodes(lambda: make_env("maze"), Flaky(),
                                                 [{"task_id": i} for i in (0, 5, 9)], concurrency=3)}
    assert res[0]["end"] == "policy_error" and "bad response" in res[0]["error"] and res[0]["success"] == 0
    assert res[5]["success"] == 1 and res[9]["success"] == 1


def test_unreachable_model_server_stops_fast(tmp_path):
    t0 = time.time()
    policy = OpenAIPolicy("m", "http://127.0.0.1:9/v1", timeout=2, max_retries=0)
    with pytest.raises(agent.PolicyError, match="cannot reach the model server at http://127.0.0.1:9/v1"):
        list(run_episodes(lambda: make_env("maze"), policy, [{"task_id": 0}]))
    args = evaluate.get_args(["--env", "maze", "--tasks", "0:2", "--policy", "openai", "--model", "m",
                              "--base-url", "http://127.0.0.1:9/v1", "--output", str(tmp_path / "r.jsonl")])
    with pytest.raises(SystemExit, match="stopped: cannot reach the model server"):
        evaluate.evaluate(args)
    assert time.time() - t0 < 30


def test_evaluate_cli_resumable_with_valid_trajectories(tmp_path, capsys):
    out, traj = tmp_path / "res.jsonl", tmp_path / "traj.jsonl"
    argv = ["--env", "maze", "--tasks", "0:6", "--output", str(out), "--save-trajectories", str(traj),
            "--concurrency", "3"]
    evaluate.evaluate(evaluate.get_args(argv))
    recs = read_records(traj)  # validates every record
    rows = [json.loads(l) for l in open(out)]
    assert sorted(r["task_id"] for r in rows) == list(range(6)) and all(r["success"] == 1 for r in rows)
    assert {r["item_id"] for r in recs} == {f"maze_{i}" for i in range(6)}
    for rec in recs:
        conv = rec["conversations"]
        assert [t["loss"] for t in conv[:3]] == [None, False, None]
        assert all(t["loss"] is True for t in conv[3::2]) and all(t["loss"] is None for t in conv[4::2])
        assert conv[-1]["value"].strip() == "Success"  # AgentGym's server sends "Success\n"
    # a rerun over a larger range does only the new tasks, and duplicates nothing
    with open(out, "a") as f:
        f.write('{"item_id": "maze_9", "partial')  # a run killed mid-write
    evaluate.evaluate(evaluate.get_args(argv[:2] + ["--tasks", "0:8"] + argv[4:]))
    assert "6 already in" in capsys.readouterr().out
    rows = [json.loads(l) for l in open(out)]
    assert sorted(r["task_id"] for r in rows) == list(range(8))
    assert len(read_records(traj)) == 8
    # the report: Maze 100, the png is written
    png = tmp_path / "t.png"
    t1 = evaluate.report(evaluate.get_args(["--report", str(out), "--report-png", str(png)]))["table1"]
    assert t1["expert"]["maze"]["score"] == 100.0 and t1["expert"]["maze"]["n"] == 8 and png.stat().st_size > 1000
    assert t1["expert"]["avg_in"] is None and t1["expert"]["part_in"]["of"] == (1, 10)  # 1 of 10 held-in columns


def test_report_layout_and_metrics(tmp_path, capsys):
    rows = [{"item_id": f"maze_{i}", "env": "maze", "task_id": i, "reward": float(i % 2), "success": i % 2,
             "label": "m1"} for i in range(4)]
    rows += [{"item_id": f"babyai_{i}", "env": "babyai", "task_id": i, "reward": r, "success": int(r > 0),
              "label": "m1"} for i, r in enumerate([0.9, 0.5, 0.0, 0.2])]
    rows += [{"item_id": f"sheet_{i}", "env": "sheet", "task_id": i, "reward": 0.25, "success": 0,
              "label": "m1"} for i in range(2)]
    rows += [{"item_id": f"pddl_{i}", "env": "pddl", "task_id": i, "reward": 0.0, "success": 0, "progress": p,
              "label": "m1"} for i, p in enumerate([0.5, 0.1])]
    rows += [{"item_id": f"maze_{i}", "env": "maze", "task_id": i, "reward": 1.0, "success": 1, "label": "m2"}
             for i in range(4)]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    t1 = evaluate.report(evaluate.get_args(["--report", str(path), "--report-png", str(tmp_path / "p.png")]))["table1"]
    assert t1["m1"]["maze"]["score"] == 50.0                      # success rate
    assert t1["m1"]["babyai"]["score"] == pytest.approx(40.0)     # mean reward x 100 (dense reward, as AgentGym)
    assert t1["m1"]["pddl"]["score"] == pytest.approx(30.0)       # progress rate x 100, not the reward
    assert t1["m1"]["sheet"]["score"] == pytest.approx(25.0)
    # 2 of 10 held-in and 2 of 4 held-out columns: no AVG, a partial average marked as such
    assert t1["m1"]["avg_in"] is None and t1["m1"]["avg_out"] is None
    assert t1["m1"]["part_in"]["score"] == pytest.approx(45.0) and t1["m1"]["part_in"]["of"] == (2, 10)
    assert t1["m1"]["part_out"]["score"] == pytest.approx(27.5) and t1["m1"]["part_out"]["of"] == (2, 4)
    assert t1["m2"]["part_out"] is None and t1["m2"]["avg_out"] is None
    out = capsys.readouterr().out
    head = next(l for l in out.splitlines() if "Maze" in l)
    assert "held-in" in out and "held-out" in out and "AVG k/N" in head and "PDDL" in head
    assert "45.00 (2/10)" in out and "27.50 (2/4)" in out
    # --held-out babyai: babyai joins the paper's held-out envs, nothing else is relabelled
    moved = evaluate.report(evaluate.get_args(["--report", str(path), "--report-png", str(tmp_path / "q.png"),
                                               "--held-out", "babyai"]))["table1"]
    assert moved["m1"]["part_out"]["of"] == (3, 5) and moved["m1"]["part_in"]["of"] == (1, 9)
    assert moved["m1"]["part_in"]["score"] == pytest.approx(50.0)
    out = capsys.readouterr().out
    head = out.splitlines()[out.splitlines().index(next(l for l in out.splitlines() if "Maze" in l))]
    assert head.index("Maze") < head.index("Babyai") and head.index("Sheet") < head.index("Babyai")
    assert "AVG*" in out
    # a full held-in split gives the AVG column
    full = [{"item_id": f"{e}_0", "env": e, "task_id": 0, "reward": 100.0 if e == "sciworld" else 1.0, "success": 1,
             "label": "f"}
            for e in evaluate.HELD_IN]
    path.write_text("".join(json.dumps(r) + "\n" for r in full))
    t1 = evaluate.report(evaluate.get_args(["--report", str(path), "--report-png", str(tmp_path / "p.png")]))["table1"]
    assert t1["f"]["avg_in"]["score"] == 100.0 and t1["f"]["part_in"] is None and t1["f"]["avg_out"] is None


def test_replay_of_expert_prefix():
    env = make_env("maze")
    full = run_episode(env, ExpertPolicy(), 3)
    turns = [t["value"] for t in full["conversations"][3::2]]
    for t in (0, 1, len(turns) - 1, len(turns)):
        r = run_episode(env, ExpertPolicy(), 3, replay=turns[:t])
        assert r["conversations"] == full["conversations"] and r["replayed"] == t and r["reward"] == 1.0

    class Wander:  # a sampling policy that only moves up: the episode keeps the expert prefix, then differs
        def __call__(self, convs, envs, temperature=None):
            assert temperature == 1.0
            return ["Thought:\nup\n\nAction:\nmove up"] * len(convs)

    r = run_episode(env, Wander(), 3, replay=turns[:4], temperature=1.0)
    assert r["conversations"][:3 + 2 * 4] == full["conversations"][:3 + 2 * 4]
    assert r["rounds"] == env.max_rounds and r["end"] == "max_rounds" and r["success"] == 0


def test_concurrency_does_not_change_results():
    ids = [{"task_id": i} for i in range(12)]
    one = {r["item_id"]: strip(r) for r in run_episodes(lambda: make_env("wordle"), ExpertPolicy(), ids, 1)}
    four = {r["item_id"]: strip(r) for r in run_episodes(lambda: make_env("wordle"), ExpertPolicy(), ids, 4)}
    assert one == four


def test_hf_policy_batches_running_episodes(tmp_path):
    from tests.tiny import save_tiny
    folder = save_tiny(tmp_path / "qwen", "qwen")
    policy = agent.HFPolicy(str(folder), max_new_tokens=6, max_context=100000, dtype="float32")
    sizes = []

    def spy(convs, envs, temperature=None):
        sizes.append(len(convs))
        return policy(convs, envs, temperature)

    res = list(run_episodes(lambda: make_env("wordle"), spy, [{"task_id": i} for i in range(3)], concurrency=3,
                            max_rounds=2))
    assert sizes[0] == 3 and len(res) == 3  # one generate call for all three running episodes
    for r in res:
        assert r["rounds"] == 2 and r["end"] in ("max_rounds", "done")
        assert r["format_errors"] == sum("Action:" not in t["value"] for t in r["conversations"][3::2])
    small = agent.HFPolicy(str(folder), max_new_tokens=6, max_context=50, dtype="float32")
    r = run_episode(make_env("maze"), small, 0)
    assert r["end"] == "context" and r["rounds"] == 0  # the maze prompt alone is longer than 50 tokens
