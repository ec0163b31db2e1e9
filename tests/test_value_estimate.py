"""value_estimate.py on the built-in maze with a stub policy whose success we control: r_s, V and the selected
steps equal a hand computation; the replay restores the recorded observations (and a doctored record is refused);
envs without a deterministic reset are refused; a killed run resumes without duplicates."""
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest

import agent
import runs
import trajectory
import value_estimate
from envs import make_env
from envs.maze import MazeEnv, distances

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASK_D5 = 14  # maze task whose shortest path from the start is 5 moves
TASK_D7 = 12  # ... 7 moves


class NearGoalStub:
    """Plays the expert's move when the goal is at most `reach` moves away; otherwise an invalid action (the agent
    stays put) until the env's 15 rounds run out. So a rollout from a state at distance d succeeds iff d <= reach.
    Counts its calls (one per episode turn)."""

    def __init__(self, reach=2):
        self.reach, self.calls = reach, 0

    def __call__(self, conversations, envs, temperature=None):
        self.calls += len(envs)
        assert temperature == 1.0
        return [env.expert_turn() if distances(env.maze, env.goal)[env.pos] <= self.reach
                else "Thought: I wait.\nAction: stay here" for env in envs]


def expert_record(task_id):
    res = agent.run_episode(MazeEnv(), agent.ExpertPolicy(), task_id)
    assert res["success"] == 1
    return trajectory.validate_record({"item_id": f"maze_{task_id}", "conversations": res["conversations"]})


def run_estimate(records, policy, **kw):
    stats = defaultdict(int)
    out = list(value_estimate.estimate(records, lambda: make_env("maze"), policy, env_name="maze", stats=stats, **kw))
    return {r["item_id"]: r for r in out}, stats


def test_step_values_by_hand():
    r_s, V = value_estimate.step_values([[0, 1, 1, 0, 1], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], gamma=0.9)
    assert r_s == pytest.approx([0.6, 0.8, 1.0])
    assert V == pytest.approx([0.6 + 0.9 * 1.7, 0.8 + 0.9 * 1.0, 1.0])
    crit, delta = value_estimate.critical_steps([3, 5], r_s, V, 0.1)
    assert delta == pytest.approx([0.2, 0.2]) and crit == [3, 5]
    crit, _ = value_estimate.critical_steps([3, 5], r_s, V, 0.25)
    assert crit == []


@pytest.mark.parametrize("concurrency", [1, 6])
def test_values_and_selection_match_hand_computation(concurrency):
    rec = expert_record(TASK_D5)
    steps = trajectory.step_indices(rec)
    assert len(steps) == 5
    stub = NearGoalStub(reach=2)
    out, stats = run_estimate([rec], stub, rollouts=3, gamma=0.5, threshold=0.1, concurrency=concurrency)
    sel = out["maze_14"]["selection"]
    # after t expert moves the goal is 5 - t away: rollouts succeed iff 5 - t <= 2, i.e. t >= 3
    r_s = [0, 0, 0, 1, 1, 1]                     # t = 0 (start state) .. 5 (the expert's own end: reward 1)
    V = [0.21875, 0.4375, 0.875, 1.75, 1.5, 1.0]  # eq. 9 with gamma 0.5: V_t = r_s[t] + 0.5 V_{t+1}
    assert [sel["r_s"][str(s)] for s in steps] == r_s[1:]
    assert [sel["values"][str(s)] for s in steps] == pytest.approx(V[1:])
    assert sel["start"] == {"r_s": 0.0, "value": pytest.approx(0.21875)}
    assert out["maze_14"]["critical_steps"] == [steps[2]]  # the 3rd move: r_s jumps 0 -> 1
    assert trajectory.loss_turns(out["maze_14"]) == [steps[2]]
    # policy calls: 3 rollouts x (15 - t stuck turns for t = 0, 1, 2; 5 - t moves for t = 3, 4; none for t = 5)
    calls = 3 * ((15 + 14 + 13) + (2 + 1))
    assert stub.calls == stats["policy_calls"] == calls
    assert stats["episodes"] == 3 * 6


def test_literal_eq9_criterion():
    rec = expert_record(TASK_D5)
    steps = trajectory.step_indices(rec)
    out, _ = run_estimate([rec], NearGoalStub(reach=2), rollouts=1, gamma=0.5, threshold=0.1, criterion="v")
    # V rises 0.21875 -> 0.4375 -> 0.875 -> 1.75 then falls: moves 1, 2, 3 are critical under the literal rule
    assert out["maze_14"]["critical_steps"] == steps[:3]
    assert out["maze_14"]["selection"]["delta"][str(steps[2])] == pytest.approx(0.875)


def test_two_trajectories_at_once():
    recs = [expert_record(TASK_D5), expert_record(TASK_D7)]
    out, stats = run_estimate(recs, NearGoalStub(reach=3), rollouts=2, gamma=0.99, threshold=0.1, concurrency=8)
    for rec, D in zip(recs, (5, 7)):
        steps = trajectory.step_indices(rec)
        assert out[rec["item_id"]]["critical_steps"] == [steps[D - 3 - 1]]  # first t with D - t <= 3
        assert [out[rec["item_id"]]["selection"]["r_s"][str(s)] for s in steps] == \
            [float(D - t <= 3) for t in range(1, D + 1)]
    assert stats["trajectories"] == 2 and stats["selected"] == 2


def test_replay_restores_recorded_observations():
    rec = expert_record(TASK_D7)
    turns = value_estimate.expert_turns(rec)
    for t in range(len(turns) + 1):
        env = MazeEnv()
        res = agent.run_episode(env, lambda c, e, temperature=None: ["Action: stay"], TASK_D7, replay=turns[:t],
                                max_rounds=t + 1 if t < len(turns) else None)
        value_estimate.check_replay(rec, res, t)  # raises on any mismatch
        assert res["conversations"][2 + 2 * t]["value"] == rec["conversations"][2 + 2 * t]["value"]
        if t:  # the state really moved: the observation after t moves names the position reached
            assert res["conversations"][2 + 2 * t]["value"] != rec["conversations"][2]["value"]


def test_doctored_record_is_refused():
    rec = expert_record(TASK_D5)
    rec["conversations"][6]["value"] = rec["conversations"][6]["value"].replace("position", "spot", 1)
    with pytest.raises(RuntimeError, match="not deterministic"):
        run_estimate([rec], NearGoalStub(), rollouts=1)


def test_refuses_env_without_deterministic_reset(tmp_path):
    inp = tmp_path / "in.jsonl"
    runs.write_jsonl(inp, [expert_record(TASK_D5)])
    with pytest.raises(SystemExit, match="refusing --env webshop"):
        value_estimate.main(["--input", str(inp), "--output", str(tmp_path / "o.jsonl"), "--env", "webshop",
                             "--env-server", "http://127.0.0.1:9", "--policy", "expert"])


def test_resume_after_kill(tmp_path, capsys):
    recs = [expert_record(t) for t in (14, 12, 13, 15, 19, 20)]
    inp, out, ref = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "ref.jsonl"
    runs.write_jsonl(inp, recs)
    args = ["--input", str(inp), "--env", "maze", "--rollouts", "2", "--concurrency", "1"]
    # a run slowed down by a stub with latency, killed once two trajectories are written
    code = ("import sys, time, value_estimate\n"
            "from tests.test_value_estimate import NearGoalStub\n"
            "class Slow(NearGoalStub):\n"
            "    def __call__(self, *a, **k):\n        time.sleep(0.01); return super().__call__(*a, **k)\n"
            "value_estimate.make_policy = lambda args: Slow()\n"
            "value_estimate.main(sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", code] + args + ["--output", str(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 2):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(out.read_text().splitlines())
    assert 2 <= n_before < len(recs), "the kill must land mid-run"
    with open(out, "a") as f:
        f.write('{"item_id": "maze_13", "conversa')  # a kill in the middle of a write
    value_estimate.make_policy, orig = (lambda a: NearGoalStub()), value_estimate.make_policy
    try:
        value_estimate.main(args + ["--output", str(out)])
        assert f"{n_before} already done, {len(recs) - n_before} to estimate" in capsys.readouterr().out
        value_estimate.main(args + ["--output", str(ref), "--concurrency", "4"])
    finally:
        value_estimate.make_policy = orig
    got = [json.loads(l) for l in out.read_text().splitlines()]
    want = {r["item_id"]: r for r in trajectory.read_records(ref)}
    assert sorted(r["item_id"] for r in got) == sorted(want) and len(got) == len(recs)
    for r in got:
        assert r["critical_steps"] == want[r["item_id"]]["critical_steps"]
        assert r["selection"]["values"] == want[r["item_id"]]["selection"]["values"]


# ----------------------------------------------------------------------------- analyze.py (selection files compared)

def test_analyze_numbers(tmp_path, capsys):
    import itertools
    import analyze
    from tests.tiny import make_records
    recs = make_records(3, seed=5, min_steps=5, max_steps=5)
    s = [trajectory.step_indices(r) for r in recs]  # 5 steps each
    a = [trajectory.with_selection(recs[0], s[0][:2], {"method": "oracle", "reasons": [
            {"index": s[0][0], "category": "Plan Creation"}, {"index": s[0][1], "category": "Critical Action"}]}),
         trajectory.with_selection(recs[1], [s[1][4]], {"method": "oracle", "reasons": [
            {"index": s[1][4], "category": "Critical Action"}]}),
         trajectory.with_selection(recs[2], [], {"method": "oracle"})]
    b = [trajectory.with_selection(recs[0], s[0][1:3], {"method": "perplexity"}),
         trajectory.with_selection(recs[1], [s[1][0]], {"method": "perplexity"}),
         trajectory.with_selection(recs[2], [], {"method": "perplexity"})]
    fa, fb, fj = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.json"
    runs.write_jsonl(fa, a)
    runs.write_jsonl(fb, b)
    analyze.main([str(fa), str(fb), "--json", str(fj)])
    out = json.loads(fj.read_text())
    fa_, fb_ = out["files"]
    assert fa_["share_selected"] == pytest.approx(3 / 15) and fa_["none_selected"] == 1
    assert fa_["position_histogram"] == pytest.approx([1 / 3, 1 / 3, 0, 0, 1 / 3])  # positions 0, 0.25, 1
    assert fa_["mean_position"] == pytest.approx((0 + 0.25 + 1) / 3)
    assert fa_["categories"] == {"Critical Action": 2, "Plan Creation": 1}
    assert fb_["categories"] == {}
    pair = out["pairs"][0]
    assert pair["common"] == 3
    assert pair["jaccard_mean"] == pytest.approx((1 / 3 + 0 + 1) / 3)  # {0,1} vs {1,2}; {4} vs {0}; both empty
    # the chance level, checked against brute-force enumeration
    for T, x, y in [(5, 2, 2), (10, 3, 4), (7, 0, 2)]:
        subsets = lambda k: list(itertools.combinations(range(T), k))
        brute = sum(analyze.jaccard(p, q) for p in subsets(x) for q in subsets(y)) / (len(subsets(x)) * len(subsets(y)))
        assert analyze.random_jaccard(T, x, y) == pytest.approx(brute)
    assert "Jaccard mean 0.444" in capsys.readouterr().out
