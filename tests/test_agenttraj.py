"""AgentTraj-L as published (tests/agenttraj.py: one JSON list per env file, AgentGym's prefixed item ids) through
every stage: scripts/paper_data.py (per-env counts, unevaluable envs refused), select.py (oracle, random,
complement), perplexity.py, value_estimate.py --env maze on the mixed training set (the other envs skipped and
counted), analyze.py (per-env rows by the rule), take_env.py, and evaluate.py with --task-file and
--instruction-from on prefixed files."""
import json
import os
import subprocess
import sys

import pytest

import evaluate
import trajectory
import value_estimate
from tests import expert_server, oracle_server
from tests.agenttraj import FILES, write_agenttraj
from tests.conftest import ROOT
from tests.tiny import save_tiny

PY = sys.executable
TRAIN_ENVS = ["maze", "wordle", "webshop", "weather", "babyai"]


def run(*argv, timeout=120):
    env = {**{k: v for k, v in os.environ.items() if k != "ATLAS_AGENTBOARD_DATA"}, "OPENAI_API_KEY": "sk-test-agenttraj"}
    return subprocess.run([PY, *map(str, argv)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def ids_of(path):
    return [r["item_id"] for r in trajectory.read_records(str(path))]


@pytest.fixture(scope="module")
def agenttraj(tmp_path_factory):
    """The fixture files, one more JSON list with an id no rule reads, and the driver's training set made from them."""
    d = tmp_path_factory.mktemp("agenttraj")
    files = write_agenttraj(d / "AgentTraj-L", n_per_env=3)
    odd = d / "odd.json"  # an id that is not <env>_<task id>: counted, never guessed
    rec = json.load(open(files["webshop"]))[0]
    odd.write_text(json.dumps([{**rec, "item_id": "trial_T20190909_pick"}]))
    data = d / "data"
    r = run("scripts/paper_data.py", "--out", data, "--train-data", *files.values(), odd,
            "--train-envs", *TRAIN_ENVS, "--heldout-envs", "pddlgym", "--servers", "webshop", "weather",
            "--n-train", 2, "--n-eval", 2, "--babyai-levels", 0, "--tasks", "webshop=0:2", "weather=0:3")
    assert r.returncode == 0, r.stderr
    return {"files": files, "data": data, "train": data / "train.jsonl", "stdout": r.stdout, "dir": d}


def test_fixture_has_agentgyms_shape(agenttraj):
    files = agenttraj["files"]
    assert sorted(os.path.basename(p) for p in files.values()) == sorted(f"{s}_train.json" for s in FILES.values())
    for env, path in files.items():
        text = open(path, encoding="utf-8").read()
        assert text.lstrip().startswith("[")  # one JSON list per env, as published
        for rec in json.loads(text):
            assert set(rec) == {"item_id", "conversations"} and rec["item_id"].startswith(FILES[env] + "_")
            assert trajectory.split_item_id(rec["item_id"])[0] == env
            ack = rec["conversations"][1]
            assert ack["from"] == "gpt" and ack["loss"] is False and rec["conversations"][0]["loss"] is None
    # the bundled trajectories keep their task number: maze_1001 -> lmrlgym_maze_1001
    bundled = [r["item_id"] for r in trajectory.read_records(os.path.join(ROOT, "data", "maze_train.jsonl"))][:3]
    assert ids_of(files["maze"]) == ["lmrlgym_" + i for i in bundled]
    assert json.load(open(files["weather"]))[0]["conversations"][1]["value"] == "Ok."


def test_paper_data_counts_every_env_and_reason(agenttraj):
    out, train = agenttraj["stdout"], agenttraj["train"]
    assert "  maze: kept 2 of 3 (left out: 1 beyond --n-train 2)" in out
    assert "  weather: kept 2 of 3 (left out: 1 beyond --n-train 2)" in out
    assert "  babyai: kept 1 of 3 (left out: 2 of other BabyAI levels)" in out  # ids 200, 201, 202: level 0 only
    assert "  left out, not in --train-envs: alfworld 3, movie 3, sciworld 3, sqlgym 3, textcraft 3, todo 3\n" in out
    assert "left out 1 records whose item_id names no env (the first: " in out and "trial_T20190909_pick" in out
    ids = ids_of(train)
    assert [trajectory.split_item_id(i)[0] for i in ids] == ["maze"] * 2 + ["wordle"] * 2 + ["webshop"] * 2 + \
        ["weather"] * 2 + ["babyai"]
    assert ids[:2] == ids_of(agenttraj["files"]["maze"])[:2] and ids[6] == "tool_weather_0"  # prefixes kept
    assert (agenttraj["data"] / "weather_tasks.txt").read_text().split() == ["0", "1", "2"]
    assert len((agenttraj["data"] / "maze_tasks.txt").read_text().split()) == 2


@pytest.mark.parametrize("flags,message", [
    (["--train-envs", "maze", "sqlgym"], "--train-envs sqlgym: cannot be evaluated: not an environment of "
                                         "envs.REGISTRY (AgentGym's SQL env"),
    (["--train-envs", "maze", "--heldout-envs", "webshop"], "--heldout-envs webshop: cannot be evaluated: is not "
                                                            "built in and has no server"),
    (["--train-envs", "maze", "--heldout-envs", "jericho"], "--heldout-envs jericho: cannot be evaluated: needs "
                                                            "AgentBoard's data: --agentboard-data DIR or"),
    (["--train-envs", "nope"], "--train-envs nope: cannot be evaluated: not an environment of envs.REGISTRY; known:"),
])
def test_paper_data_refuses_envs_it_cannot_evaluate(agenttraj, tmp_path, flags, message):
    out = tmp_path / "data"
    r = run("scripts/paper_data.py", "--out", out, "--train-data", *agenttraj["files"].values(), *flags)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()  # refused before anything is written


def test_paper_data_refuses_a_held_in_env_without_trajectories(agenttraj, tmp_path):
    r = run("scripts/paper_data.py", "--out", tmp_path / "data", "--train-data", agenttraj["files"]["maze"],
            "--train-envs", "maze", "babyai")
    assert r.returncode == 1 and "no training trajectory of babyai in" in r.stderr, r.stderr
    assert not (tmp_path / "data").exists()


@pytest.fixture(scope="module")
def selections(agenttraj):
    """select.py (oracle on the stand-in server, random, complement) and perplexity.py on the mixed training set."""
    d, train = agenttraj["dir"], agenttraj["train"]
    srv = oracle_server.start()
    try:
        r = run("select.py", "--input", train, "--output", d / "atlas.jsonl", "--base-url", srv.url,
                "--concurrency", 2)
    finally:
        srv.shutdown()
        srv.server_close()
    assert r.returncode == 0, r.stderr
    for method, extra in (("random", []), ("complement", ["--reference", d / "atlas.jsonl"])):
        r = run("select.py", "--input", train, "--output", d / f"{method}.jsonl", "--method", method, *extra)
        assert r.returncode == 0, r.stderr
    import perplexity
    folder = save_tiny(d / "qwen", "qwen")
    perplexity.main(["--input", str(train), "--output", str(d / "ppl.jsonl"), "--model", folder])
    return {m: d / f"{m}.jsonl" for m in ("atlas", "random", "complement", "ppl")}


def test_selectors_keep_the_prefixed_records(agenttraj, selections):
    source = {r["item_id"]: r for r in trajectory.read_records(str(agenttraj["train"]))}
    for method, path in selections.items():
        got = trajectory.read_records(str(path))
        assert sorted(r["item_id"] for r in got) == sorted(source), method
        for rec in got:
            assert rec["steps"] == trajectory.step_indices(source[rec["item_id"]])
            assert rec["critical_steps"] or method == "complement"  # a 1-step trajectory's complement is empty
    atlas = {r["item_id"]: r for r in trajectory.read_records(str(selections["atlas"]))}
    for rec in trajectory.read_records(str(selections["complement"])):  # the complement: disjoint from ATLaS's
        assert not set(rec["critical_steps"]) & set(atlas[rec["item_id"]]["critical_steps"])


def test_value_estimate_on_the_mixed_file(agenttraj, tmp_path, capsys):
    out = tmp_path / "value_maze.jsonl"
    value_estimate.main(["--input", str(agenttraj["train"]), "--output", str(out), "--env", "maze", "--policy",
                         "expert", "--rollouts", "1"])
    text = capsys.readouterr().out
    skipped = "7 records of other envs skipped (wordle 2, webshop 2, weather 2, babyai 1)"
    assert "value estimate: 2 trajectories of maze" in text and text.count(skipped) == 2, text  # start and summary
    assert sorted(ids_of(out)) == sorted(ids_of(agenttraj["train"])[:2])  # lmrlgym_maze_*: maze tasks 1001, ...
    # weather: served (resets by task id through its server); its tool_weather_* records are its own
    args = value_estimate.get_args(["--input", str(agenttraj["train"]), "--output", str(tmp_path / "w.jsonl"),
                                    "--env", "weather", "--env-server", "http://127.0.0.1:9"])
    value_estimate.check_args(args)
    recs, other = value_estimate.read_input(args)
    assert [r["item_id"] for r in recs] == ["tool_weather_0", "tool_weather_1"]
    assert other == {"maze": 2, "wordle": 2, "webshop": 2, "babyai": 1}
    assert [value_estimate.task_id_of(r, "weather") for r in recs] == [0, 1]


def test_value_estimate_names_an_unreadable_id(agenttraj, tmp_path):
    recs = trajectory.read_records(agenttraj["files"]["maze"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([recs[0], {**recs[1], "item_id": "lmrlgym_maze"}]))
    with pytest.raises(SystemExit) as e:
        value_estimate.main(["--input", str(bad), "--output", str(tmp_path / "v.jsonl"), "--env", "maze",
                             "--policy", "expert", "--rollouts", "1"])
    msg = str(e.value.code)
    assert f"{bad}: record 2: item_id 'lmrlgym_maze' is not <env>_<task id>" in msg and "\n" not in msg
    assert not (tmp_path / "v.jsonl").exists()


def test_analyze_rows_per_env(agenttraj, selections, tmp_path):
    import analyze
    res = analyze.main([str(p) for p in selections.values()] + ["--json", str(tmp_path / "a.json")])
    for path in selections.values():
        rows = {e["env"]: e["trajectories"] for e in res["envs"] if e["file"] == str(path)}
        assert rows == {"maze": 2, "wordle": 2, "webshop": 2, "weather": 2, "babyai": 1}, path
    bad = tmp_path / "bad.jsonl"
    rec = trajectory.read_records(str(selections["random"]))[0]
    bad.write_text(json.dumps({**rec, "item_id": "x-1"}) + "\n")
    with pytest.raises(SystemExit, match=r"bad.jsonl: record 1: item_id 'x-1' is not <env>_<task id>"):
        analyze.main([str(bad)])


def test_take_env_keeps_the_prefixed_maze_records(agenttraj, selections, tmp_path):
    out = tmp_path / "maze_selection.jsonl"
    r = run("scripts/take_env.py", "--input", selections["atlas"], "--output", out, "--env", "maze", "-n", 5)
    assert r.returncode == 0, r.stderr
    assert sorted(ids_of(out)) == sorted(ids_of(agenttraj["train"])[:2])  # the oracle writes in completion order
    assert "2 trajectories of maze; left out: " in r.stdout and "weather 2" in r.stdout, r.stdout
    r = run("scripts/take_env.py", "--input", selections["atlas"], "--output", tmp_path / "w.jsonl", "--env",
            "weather", "-n", 1)
    assert ids_of(tmp_path / "w.jsonl") == [i for i in ids_of(selections["atlas"]) if i.startswith("tool_weather_")][:1]
    assert "weather beyond -n 1 1" in r.stdout, r.stdout


def test_evaluate_task_file_is_a_prefixed_json_list(agenttraj, tmp_path, capsys):
    maze = agenttraj["files"]["maze"]
    want = [trajectory.split_item_id(i)[1] for i in ids_of(maze)]
    out = tmp_path / "r.jsonl"
    evaluate.main(["--env", "maze", "--task-file", maze, "--output", str(out)])
    rows = [json.loads(line) for line in open(out)]
    assert [r["task_id"] for r in sorted(rows, key=lambda r: want.index(r["task_id"]))] == want
    assert all(r["success"] == 1 for r in rows)  # the replayable bundled tasks, reset by their own number
    mixed = tmp_path / "mixed.json"  # all of AgentTraj-L in one list: the other envs' ids counted
    mixed.write_text(json.dumps([r for p in agenttraj["files"].values() for r in json.load(open(p))]))
    ids, other = evaluate.read_task_file(str(mixed), "maze")
    assert ids == want and other["weather"] == 3 and other["wordle"] == 3 and sum(other.values()) == 30


def test_evaluate_instruction_from_a_prefixed_file(agenttraj, tmp_path):
    """--instruction-from takes the instruction of the file's first maze record (lmrlgym_maze_*, not the first
    record, not a startswith match): the served maze plays it, the expert stand-in answers."""
    from envs.serve import start
    files = agenttraj["files"]
    babyai, maze = json.load(open(files["babyai"])), json.load(open(files["maze"]))
    mine = "You are an expert maze solver (the instruction of this file)."
    for rec in maze:
        rec["conversations"][0]["value"] = mine
    path = tmp_path / "instructions.json"
    path.write_text(json.dumps(babyai + maze))
    assert evaluate.instruction_from(str(path), "maze") == mine
    with pytest.raises(trajectory.RecordError, match="no record of env 'wordle' to take its instruction from "
                                                     r"\(the file holds babyai 3, maze 3\)"):
        evaluate.instruction_from(str(path), "wordle")
    task = trajectory.split_item_id(maze[0]["item_id"])[1]
    env_srv, env_url = start("maze")
    model, model_url = expert_server.start("maze", [task])
    try:
        saved = tmp_path / "saved.jsonl"
        evaluate.main(["--env", "maze", "--env-server", env_url, "--instruction-from", str(path), "--policy",
                       "openai", "--model", "stub", "--base-url", model_url, "--max-context", "0",
                       "--tasks", f"{task}:{task + 1}", "--output", str(tmp_path / "r.jsonl"),
                       "--save-trajectories", str(saved)])
    finally:
        model.shutdown()
        env_srv.shutdown()
    rec = trajectory.read_records(str(saved))[0]
    assert rec["conversations"][0]["value"] == mine and rec["success"] == 1
