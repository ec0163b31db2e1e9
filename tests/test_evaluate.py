"""agent.py and evaluate.py: the openai policy against a stub server that plays the expert reaches the expert's
score, malformed model output is counted (exactly: the stub's every 3rd answer) and never crashes a run, a model
server that refuses or never answers stops the run after one request, within its timeout, with a clear message and
no result rows, evaluate.py is resumable and writes valid AgentTraj-L records, replay of expert prefixes,
the hf policy's batching, and the Table-1 report."""
import json
import os
import re
import socket
import threading
import time

import pytest

import agent
import evaluate
import scores
from agent import ExpertPolicy, OpenAIPolicy, run_episode, run_episodes
from envs import make_env
from tests import expert_server
from tests.conftest import ROOT, interrupt_when
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


def garbage_schedule(expert_rounds, every, max_rounds):
    """{task: (rounds, format errors, end)} when the episodes run one after the other against the stub server whose
    every `every`-th answer (counted over the whole run) is garbage: a garbage turn costs a round and leaves the
    maze where it was, so an episode ends after its expert turns ("done") or at max_rounds."""
    n, out = 0, {}
    for task, need in expert_rounds.items():
        rounds = bad = 0
        while rounds - bad < need and rounds < max_rounds:
            n, rounds = n + 1, rounds + 1
            bad += n % every == 0
        out[task] = (rounds, bad, "done" if rounds - bad == need else "max_rounds")
    return out


@pytest.mark.parametrize("concurrency", [1, 3])
def test_malformed_model_output_is_counted_not_fatal(concurrency):
    ids = list(range(6))
    expert = expert_results("maze", ids)
    server, url = expert_server.start("maze", ids, garbage_every=3)
    try:
        res = list(run_episodes(lambda: make_env("maze"), OpenAIPolicy("stub", url, timeout=30),
                                [{"task_id": i} for i in ids], concurrency=concurrency))
    finally:
        server.shutdown()
    assert len(res) == len(ids)
    bad = sum(r["format_errors"] for r in res)
    turns = sum(r["rounds"] for r in res)
    # one request per turn, and the server's every 3rd answer has no "Action:": exactly a third of the turns
    assert turns == server.count and bad == turns // 3, (bad, turns, server.count)
    for r in res:
        garbage = [t for t in r["conversations"][3::2] if "Action:" not in t["value"]]
        assert len(garbage) == r["format_errors"]
        # the other turns are the expert's, in order: a garbage turn costs a round and changes nothing else
        good = [t["value"] for t in r["conversations"][3::2] if "Action:" in t["value"]]
        want = [t["value"] for t in expert[r["item_id"]]["conversations"][3::2]]
        assert good == want[:len(good)], r["item_id"]
        if r["end"] == "done":
            assert good == want and r["success"] == 1, r["item_id"]
        else:
            assert r["end"] == "max_rounds" and r["rounds"] == 15 and len(good) < len(want), r["item_id"]
    if concurrency == 1:  # one episode after the other: which turns are garbage is known in advance
        want = garbage_schedule({i: expert[f"maze_{i}"]["rounds"] for i in ids}, 3, 15)
        assert {r["task_id"]: (r["rounds"], r["format_errors"], r["end"]) for r in res} == want
        assert bad == 29  # expert rounds 12 11 10 11 12 12: five episodes hit the 15-round limit with 5 garbage turns,
        #                   maze_2 ends "done" after 10 expert turns + 4 garbage ones


def test_policy_exception_ends_only_that_episode():
    class Flaky:
        def __call__(self, convs, envs, temperature=None):
            return [ValueError("bad response") if env.pos == (1, 1) else env.expert_turn() for env in envs]

    res = {r["task_id"]: r for r in run_episodes(lambda: make_env("maze"), Flaky(),
                                                 [{"task_id": i} for i in (0, 5, 9)], concurrency=3)}
    assert res[0]["end"] == "policy_error" and "bad response" in res[0]["error"] and res[0]["success"] == 0
    assert res[5]["success"] == 1 and res[9]["success"] == 1


class SilentServer:
    """A model server that accepts connections and never answers (hung, or stuck behind a proxy). It counts the
    connections and closes each after `hold` seconds, so a client that ignores its timeout fails the time bound of
    the test (a 30 s wait) instead of hanging the test run."""

    def __init__(self, hold=30.0):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.hold, self.connections = hold, 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.connections += 1
            timer = threading.Timer(self.hold, conn.close)
            timer.daemon = True
            timer.start()

    def close(self):
        self.sock.close()


def test_unreachable_model_server_stops_fast(tmp_path):
    # nothing listens (connection refused): the run stops at once with one line naming the server
    policy = OpenAIPolicy("m", "http://127.0.0.1:9/v1", timeout=2, max_retries=0)
    with pytest.raises(agent.PolicyError, match="cannot reach the model server at http://127.0.0.1:9/v1"):
        list(run_episodes(lambda: make_env("maze"), policy, [{"task_id": 0}]))
    out = tmp_path / "r.jsonl"
    args = evaluate.get_args(["--env", "maze", "--tasks", "0:2", "--policy", "openai", "--model", "m",
                              "--base-url", "http://127.0.0.1:9/v1", "--output", str(out)])
    with pytest.raises(SystemExit, match="stopped: cannot reach the model server") as e:
        evaluate.evaluate(args)
    assert "\n" not in str(e.value.code)
    assert not out.exists() or out.read_text() == ""  # no task is recorded as a model failure
    # a server that never answers: the request timeout ends the run after one request, and no task is tried after
    # it. The time bounds are real guards: a client that ignored timeout=1 would wait for the close at 30 s.
    silent = SilentServer(hold=30.0)
    try:
        url = re.escape(silent.url)
        t0 = time.time()
        with pytest.raises(agent.PolicyError, match=f"cannot reach the model server at {url}"):
            list(run_episodes(lambda: make_env("maze"), OpenAIPolicy("m", silent.url, timeout=1, max_retries=0),
                              [{"task_id": i} for i in range(3)], concurrency=1))
        assert time.time() - t0 < 10 and silent.connections == 1, (time.time() - t0, silent.connections)
        out = tmp_path / "silent.jsonl"
        args = evaluate.get_args(["--env", "maze", "--tasks", "0:3", "--policy", "openai", "--model", "m",
                                  "--base-url", silent.url, "--request-timeout", "1", "--concurrency", "1",
                                  "--output", str(out)])
        t0 = time.time()
        with pytest.raises(SystemExit, match="stopped: cannot reach the model server at http://127.0.0.1:"):
            evaluate.evaluate(args)  # its first request (/tokenize, for the context rule) times out
        assert time.time() - t0 < 10 and silent.connections == 2, (time.time() - t0, silent.connections)
        assert not out.exists() or out.read_text() == ""
    finally:
        silent.close()


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
            for e in scores.HELD_IN]
    path.write_text("".join(json.dumps(r) + "\n" for r in full))
    t1 = evaluate.main(["--report", str(path), "--report-png", str(tmp_path / "p.png")])["table1"]
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
    assert one == four and len(one) == 12 and all(r["success"] == 1 for r in one.values())


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
    assert sizes == [3, 3] and len(res) == 3  # each of the 2 rounds: one generate call for all three episodes
    for r in res:
        assert r["rounds"] == 2 and r["end"] in ("max_rounds", "done")
        assert r["format_errors"] == sum("Action:" not in t["value"] for t in r["conversations"][3::2])
    small = agent.HFPolicy(str(folder), max_new_tokens=6, max_context=50, dtype="float32")
    r = run_episode(make_env("maze"), small, 0)
    assert r["end"] == "context" and r["rounds"] == 0  # the maze prompt alone is longer than 50 tokens


# ----------------------------------------------------------------------------- task files, bad inputs, one writer

def test_task_file_formats(tmp_path, capsys):
    plain = tmp_path / "ids.txt"
    plain.write_text("3\n\n0\nmaze_7\n")
    assert evaluate.read_task_file(str(plain), "maze")[0] == [3, 0, 7]
    agenteval = tmp_path / "maze_test.json"  # AgentEval: a JSON list of objects, prefixed item ids
    agenteval.write_text(json.dumps([{"item_id": f"lmrlgym_maze_{i}", "conversations": []} for i in (4, 1, 2)]))
    assert evaluate.read_task_file(str(agenteval), "maze")[0] == [4, 1, 2]
    weather = tmp_path / "weather.json"
    weather.write_text(json.dumps([{"item_id": "tool_weather_5"}, {"item_id": "tool_weather_0"}]))
    assert evaluate.read_task_file(str(weather), "weather")[0] == [5, 0]
    # AgentTraj-L as JSONL records of several envs: the maze ids are taken, the others counted
    traj = tmp_path / "traj.jsonl"
    recs = [{"item_id": i, "conversations": [{"from": "human", "value": "x"}]} for i in
            ("maze_10", "wordle_3", "babyai_2", "maze_11")]
    traj.write_text("".join(json.dumps(r) + "\n" for r in recs))
    ids, other = evaluate.read_task_file(str(traj), "maze")
    assert ids == [10, 11] and other == {"wordle": 1, "babyai": 1}
    # and through the CLI
    out = tmp_path / "r.jsonl"
    evaluate.main(["--env", "maze", "--task-file", str(agenteval), "--output", str(out)])
    assert sorted(json.loads(l)["task_id"] for l in open(out)) == [1, 2, 4]
    evaluate.main(["--env", "maze", "--task-file", str(traj), "--output", str(tmp_path / "r2.jsonl")])
    assert "2 tasks of other envs left out (wordle 1, babyai 1)" in capsys.readouterr().out


def expect_one_line(argv, message, capsys=None):
    """evaluate.main(argv) stops with one line holding `message` (argparse errors: exit code 2, message on stderr)."""
    with pytest.raises(SystemExit) as e:
        evaluate.main(argv)
    text = str(e.value.code) if not isinstance(e.value.code, int) else capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code != 0 and message in text and "\n" not in text, text
    return text


def test_bad_inputs_one_line_nothing_left_behind(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    dup, empty, folder = tmp_path / "dup.txt", tmp_path / "empty.txt", tmp_path / "folder"
    dup.write_text("1\n2\n1\n")
    empty.write_text("\n")
    folder.mkdir()
    base = ["--env", "maze", "--output", str(out)]
    expect_one_line(base + ["--tasks", "3:1"], "--tasks 3:1: an empty or negative range", capsys)
    expect_one_line(base + ["--task-file", str(empty)], "the task file is empty")
    expect_one_line(base + ["--task-file", str(dup)], "line 3: duplicate task maze_1 (first at line 1)")
    expect_one_line(base + ["--task-file", str(folder)], "is a folder")
    partial = tmp_path / "partial.txt"  # "10" may be the first half of "1050": no task of a half-written line
    partial.write_text("0\n1\n10")
    expect_one_line(base + ["--task-file", str(partial)], "partial.txt: line 3: '10' has no newline at the end")
    assert not out.exists()
    expect_one_line(base + ["--tasks", "0:2", "--max-rounds", "0"], "--max-rounds must be at least 1", capsys)
    expect_one_line(base + ["--tasks", "0:2", "--concurrency", "0"], "--concurrency must be at least 1", capsys)
    expect_one_line(["--env", "maze", "--tasks", "0:2", "--output", str(folder)], "is a folder", capsys)
    for model, message in ((tmp_path / "nomodel", "nomodel"), (folder, "folder")):
        expect_one_line(base + ["--tasks", "0:2", "--policy", "hf", "--model", str(model)], message)
    # no output, no config, no lock
    assert sorted(os.listdir(tmp_path)) == ["dup.txt", "empty.txt", "folder", "partial.txt"]
    # the command line: exit code 1, one line on stderr, no traceback
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "evaluate.py", "--env", "maze", "--task-file", str(dup), "--output",
                          str(out)], cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         capture_output=True, text=True)
    assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1 and "duplicate task" in run.stderr


def test_config_has_no_key_and_other_settings_are_refused(tmp_path):
    out = tmp_path / "r.jsonl"
    canary = "sk-canary-0123456789"
    argv = ["--env", "maze", "--tasks", "0:2", "--output", str(out), "--api-key", canary, "--label", "expert"]
    evaluate.main(argv)
    cfg = json.load(open(str(out) + ".config.json"))
    assert cfg["api_key_set"] is True and "api_key" not in cfg
    assert all(canary not in open(tmp_path / f).read() for f in os.listdir(tmp_path))
    for change, what in ((["--label", "other"], "label"), (["--max-rounds", "3"], "max_rounds"),
                         (["--temperature", "0.5"], "temperature")):
        with pytest.raises(SystemExit, match=f"other settings \\({what}:"):
            evaluate.main(argv[:-2] + change if change[0] == "--label" else argv + change)
    assert len(open(out).readlines()) == 2
    evaluate.main(argv + ["--max-rounds", "3", "--tasks", "0:3", "--force"])  # told to: the run goes on
    assert len(open(out).readlines()) == 3
    # a second writer is refused, naming the holder; a lock its killed holder left does not block
    from runs import lock_output
    held = lock_output(str(out))
    try:
        with pytest.raises(SystemExit, match="another run is writing this output"):
            evaluate.main(argv + ["--force"])
    finally:
        held.close()
    evaluate.main(argv + ["--force"])


# ----------------------------------------------------------------------------- Table 6: --from-critical

def make_selection(tmp_path, ids):
    """A tiny selection file from the expert's own maze episodes: every other step is critical."""
    from runs import write_jsonl
    from trajectory import step_indices, with_selection
    evaluate.main(["--env", "maze", "--tasks", f"{ids[0]}:{ids[-1] + 1}", "--output", str(tmp_path / "e.jsonl"),
                   "--save-trajectories", str(tmp_path / "expert.jsonl")])
    recs = read_records(tmp_path / "expert.jsonl")
    sel = [with_selection(r, step_indices(r)[1::2], {"method": "random", "ratio": 0.5}) for r in recs]
    write_jsonl(tmp_path / "sel.jsonl", sel)
    return {r["item_id"]: r for r in sel}


class MoveUp:  # a fixed stub policy
    def __call__(self, convs, envs, temperature=None):
        return ["Thought:\nup\n\nAction:\nmove up"] * len(convs)


def test_from_critical_expert_and_stub(tmp_path, capsys):
    sel = make_selection(tmp_path, list(range(4)))
    n_crit = sum(len(r["critical_steps"]) for r in sel.values())
    assert n_crit == 21  # every other step of the expert's 12, 11, 10 and 11 steps: 6 + 5 + 5 + 5
    for name, policy in (("expert", None), ("stub", MoveUp())):
        out = tmp_path / f"table6_{name}.jsonl"
        argv = ["--from-critical", str(tmp_path / "sel.jsonl"), "--output", str(out), "--label", "base",
                "--concurrency", "3"]
        res = evaluate.from_critical(evaluate.get_args(argv), policy=policy)
        assert len(res) == len(sel) + n_crit  # one from scratch per task, one per critical step
        rows = [json.loads(l) for l in open(out)]
        assert sorted((r["item_id"], r["start"] or 0) for r in rows) == sorted(
            [(i, 0) for i in sel] + [(i, c) for i, r in sel.items() for c in r["critical_steps"]])
        for r in res:
            rec = sel[r["item_id"]]
            if r["start"] is None:
                assert r["replayed"] == 0
                continue
            c = r["start"]
            # word for word: the record's turns through its critical step, then the policy's own
            words = lambda conv: [(t["from"], t["value"]) for t in conv]  # the loss flags are the selection's
            assert words(r["conversations"][:c + 1]) == words(rec["conversations"][:c + 1])
            assert r["replayed"] == len([s for s in rec["steps"] if s <= c])
            if policy is None:
                assert r["success"] == 1
            elif len(r["conversations"]) > c + 2:
                assert r["conversations"][c + 2]["value"] == "Thought:\nup\n\nAction:\nmove up"
        if policy is None:
            assert all(r["success"] == 1 for r in res)  # the expert reaches success from every start
        # a rerun does nothing more
        again = evaluate.from_critical(evaluate.get_args(argv), policy=policy)
        assert again == [] and len(open(out).readlines()) == len(sel) + n_crit
    capsys.readouterr()
    t6 = evaluate.report(evaluate.get_args(["--report", str(tmp_path / "table6_stub.jsonl"), "--report-png",
                                            str(tmp_path / "t.png")]))["table6"]["base"]["maze"]
    assert t6["scratch"]["n"] == 4 and t6["critical"]["n"] == n_crit and t6["tasks"] == 4
    rows = [json.loads(l) for l in open(tmp_path / "table6_stub.jsonl")]
    restarts = [r for r in rows if r["start"] is not None]
    solved = lambda rs: 100.0 * sum(r["success"] for r in rs) / len(rs)
    assert t6["scratch"]["score"] == solved([r for r in rows if r["start"] is None])
    assert t6["critical"]["score"] == solved(restarts)
    best = [max(r["success"] for r in restarts if r["item_id"] == i) for i in sel]  # per task: any restart solved
    assert t6["best"]["n"] == 4 and t6["best"]["score"] == 100.0 * sum(best) / 4
    assert t6["replay_only"] == sum(r["rounds"] == r["replayed"] for r in restarts)
    assert "From critical step" in capsys.readouterr().out


def test_from_critical_bad_selection_one_line(tmp_path):
    sel = make_selection(tmp_path, [0, 1])
    plain = tmp_path / "plain.jsonl"
    plain.write_text(open(tmp_path / "expert.jsonl").read())
    out = str(tmp_path / "c.jsonl")
    with pytest.raises(SystemExit, match="record 1 .*no 'critical_steps'"):
        evaluate.main(["--from-critical", str(plain), "--output", out])
    with pytest.raises(SystemExit, match="no record of env 'wordle'"):
        evaluate.main(["--from-critical", str(tmp_path / "sel.jsonl"), "--env", "wordle", "--output", out])
    twice = tmp_path / "twice.jsonl"
    twice.write_text("".join(json.dumps({**r, "item_id": p + r["item_id"]}) + "\n"
                             for p, r in (("", sel["maze_0"]), ("lmrlgym_", sel["maze_0"]))))
    with pytest.raises(SystemExit, match="record 2 .*task maze_0 again"):
        evaluate.main(["--from-critical", str(twice), "--output", out])
    assert not os.path.exists(out) and not os.path.exists(out + ".config.json") and len(sel) == 2


def test_results_carry_the_models_selection_and_are_named_by_it(tmp_path):
    model = tmp_path / "final"  # what train.py leaves in a model folder: the training records' selection
    model.mkdir()
    (model / "selection.json").write_text(json.dumps({"method": "oracle", "ratio": 0.3, "model": "gpt-4o",
                                                      "n_records": 4}))
    out = tmp_path / "r.jsonl"
    evaluate.main(["--env", "maze", "--policy", "expert", "--model", str(model), "--tasks", "0:2",
                   "--output", str(out)])
    rows = [json.loads(line) for line in open(out)]
    assert len(rows) == 2 and {r["label"] for r in rows} == {"critical@0.3"}  # oracle = ATLaS = the Critical row
    assert all(r["selection"] == {"method": "oracle", "ratio": 0.3, "model": "gpt-4o", "n_records": 4}
               for r in rows)
    assert not any("backbone" in r for r in rows)  # the expert stands for no base model
    kept = json.load(open(f"{out}.config.json"))  # the run's settings name the selection too
    assert kept["selection"]["method"] == "oracle" and kept["label"] == "critical@0.3"
    # the default label of each selector's model: the complement is Table 2's non-critical row, a fork's selector
    # is named by its own method, AgentTraj-L itself (no selection in its records) is the complete row
    for sel, label in (({"method": "complement", "ratio": 0.3}, "noncritical@0.3"),
                       ({"method": "toy", "ratio": 0.25}, "toy@0.25"),
                       ({"method": "complete", "ratio": 1.0, "model": None}, "complete")):
        (model / "selection.json").write_text(json.dumps(sel))
        other = tmp_path / f"{label}.jsonl"
        evaluate.main(["--env", "maze", "--policy", "expert", "--model", str(model), "--tasks", "0:1",
                       "--output", str(other)])
        got = json.loads(open(other).readline())
        assert got["label"] == label and got["selection"] == sel
    named = tmp_path / "named.jsonl"  # an explicit --label still names the row
    evaluate.main(["--env", "maze", "--policy", "expert", "--model", str(model), "--tasks", "0:1",
                   "--label", "mine", "--output", str(named)])
    assert json.loads(open(named).readline())["label"] == "mine"
    for bad, message in (("[1]", "selection.json: not a selection"),
                         ('{"method": "toy", "ratio": "0.3"}', "selection.json: 'ratio' must be a number or null")):
        (model / "selection.json").write_text(bad)
        with pytest.raises(SystemExit) as e:
            evaluate.main(["--env", "maze", "--policy", "expert", "--model", str(model), "--tasks", "0:1",
                           "--output", str(tmp_path / "bad.jsonl")])
        assert message in str(e.value) and "\n" not in str(e.value)
        assert not os.path.exists(tmp_path / "bad.jsonl") and not os.path.exists(tmp_path / "bad.jsonl.config.json")


def test_ctrl_c_is_one_line_and_the_rerun_loses_and_duplicates_nothing(tmp_path):
    import subprocess
    import sys
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "evaluate.py", "--env", "wordle", "--policy", "expert", "--tasks", "0:300",
           "--concurrency", "4", "--output", str(out)]
    rc, err = interrupt_when(cmd, lambda: out.exists() and out.stat().st_size > 0)
    lines = [l for l in err.splitlines() if l.startswith("evaluate.py: ")]
    assert rc == 130 and len(lines) == 1 and "interrupted" in lines[0], err[-2000:]
    assert "Traceback" not in err
    kept = len(open(out).readlines())
    assert 0 < kept < 300
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    rows = [json.loads(line) for line in open(out)]
    assert sorted(r["task_id"] for r in rows) == list(range(300))  # nothing lost, nothing twice


def test_hf_rows_name_their_backbone():
    """--policy hf rows carry the base model they stand for (Table 7 and Figure 2 group rows by it): train.py's
    selection.json names it for a fine-tuned model, a base model is its folder's name; other policies name none."""
    from argparse import Namespace
    hf = Namespace(policy="hf", model="/models/Qwen2.5-7B-Instruct/")
    assert evaluate.model_backbone(hf, None) == "Qwen2.5-7B-Instruct"
    trained = Namespace(policy="hf", model="out/train/critical@0.3/final")
    assert evaluate.model_backbone(trained, {"method": "oracle", "backbone": "Llama-3.1-8B-Instruct"}) == \
        "Llama-3.1-8B-Instruct"
    assert evaluate.model_backbone(trained, {"method": "oracle"}) is None  # an older selection.json names none
    assert evaluate.model_backbone(Namespace(policy="openai", model="gpt-4o"), None) is None


def test_several_envs_in_one_run_equal_one_run_each(tmp_path, capsys):
    """--env maze,wordle plays each env as its own run would (own output, settings, resume) with one policy."""
    both = str(tmp_path / "both_{env}.jsonl")
    evaluate.main(["--env", "maze,wordle", "--policy", "expert", "--tasks", "0:2", "--output", both])
    for env in ("maze", "wordle"):
        one = tmp_path / f"one_{env}.jsonl"
        evaluate.main(["--env", env, "--policy", "expert", "--tasks", "0:2", "--output", str(one)])
        strip = lambda path: [{k: v for k, v in json.loads(line).items() if k != "seconds"}  # noqa: E731
                              for line in open(path)]
        assert strip(both.format(env=env)) == strip(one) and len(strip(one)) == 2
        assert json.load(open(both.format(env=env) + ".config.json"))["env"] == env
    capsys.readouterr()
    evaluate.main(["--env", "maze,wordle", "--policy", "expert", "--tasks", "0:2", "--output", both])
    assert capsys.readouterr().out.count("2 already in") == 2  # resumed per env: nothing played again
    evaluate.main(["--env", "wordle", "--policy", "expert", "--tasks", "0:3", "--output", both])  # one, by pattern
    assert len(open(both.format(env="wordle")).readlines()) == 3
    for argv, says in ((["--output", str(tmp_path / "x.jsonl")], "must name each env's file with {env}"),
                       (["--output", both, "--env-server", "http://127.0.0.1:9"], "ENV=URL pairs"),
                       (["--output", both, "--env", "maze,nope"], "unknown built-in environment 'nope'")):
        with pytest.raises(SystemExit, match=says):
            evaluate.main(["--env", "maze,wordle", "--policy", "expert", "--tasks", "0:2"] + argv)
