"""Issue 13: every stage meets bad input with one line that names the file and the line (or record), a non-zero exit
and no traceback, and leaves no output behind; select.py fails item by item, never run by run; no key is ever
written; one writer per output, and a lock left by a killed run does not block.

The table of malformed inputs (CASES) and of bad options (OPTION_CASES) is generated here and fed to every stage
in STAGES (all of them are in ENABLED). To list the rows a stage fails without pytest:

    python tests/test_robust.py analyze evaluate train
"""
import contextlib
import functools
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import traceback

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import runs
import trajectory  # noqa: E402

PY = sys.executable
CANARY = "sk-proj-CANARYcanaryNeverWrite0123456789"
NO_MODEL = "/nonexistent/model-folder"  # a stage that loads its model before reading its input fails on this


# ----------------------------------------------------------------------------- running a stage

def _module(script):
    """The stage module of `script` (select.py under another name: as `select` it hands back the stdlib)."""
    name = {"select.py": "atlas_select"}.get(script, script[:-3])
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, script))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


IN_PROCESS = {"select.py", "perplexity.py", "value_estimate.py", "analyze.py", "evaluate.py"}  # with main(argv)


def run_stage(argv, subprocess_=False, timeout=300):
    """Run a stage (argv[0] is its script) -> (exit code, stderr). In-process through main(argv) where the stage
    has one (fast: no interpreter start, no torch import per run), else as a subprocess. In-process, an exception
    that escapes main is reported as the interpreter would: a traceback in stderr and exit code 1."""
    argv = [str(a) for a in argv]
    if subprocess_ or argv[0] not in IN_PROCESS:
        env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "RANK", "WORLD_SIZE")}
        r = subprocess.run([PY, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stderr
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            _module(argv[0]).main(argv[1:])
            rc = 0
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, (int, type(None))):
                print(e.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            rc = 1
    return rc, err.getvalue()


# ----------------------------------------------------------------------------- the stages and their outputs

def _out_dir(o):
    return str(o) + ".d"


# argv(input, output) per stage; "output" is what the stage writes (a file, or train.py's folder), "leftovers"
# what a refused run must not leave behind.
STAGES = {
    "select": {"argv": lambda i, o: ["select.py", "--input", i, "--output", o, "--method", "random"],
               "leftovers": lambda o: [o, f"{o}.config.json", f"{o}.errors.jsonl"], "output": "file"},
    "perplexity": {"argv": lambda i, o: ["perplexity.py", "--input", i, "--output", o, "--model", NO_MODEL],
                   "leftovers": lambda o: [o, f"{o}.config.json"], "output": "file"},
    "value_estimate": {"argv": lambda i, o: ["value_estimate.py", "--input", i, "--output", o, "--env", "maze",
                                             "--policy", "expert", "--rollouts", "1"],
                       "leftovers": lambda o: [o, f"{o}.config.json"], "output": "file"},
    "analyze": {"argv": lambda i, o: ["analyze.py", i, "--json", o], "leftovers": lambda o: [o], "output": "file"},
    "evaluate": {"argv": lambda i, o: ["evaluate.py", "--env", "maze", "--policy", "expert", "--from-critical", i,
                                       "--output", o],
                 "leftovers": lambda o: [o, f"{o}.config.json"], "output": "file"},
    "train": {"argv": lambda i, o: ["train.py", "--data", i, "--model", tiny_model_folder(), "--output", o],
              "leftovers": lambda o: [], "output": "folder"},
}
ENABLED = set(STAGES)  # every stage that reads records
PENDING = set(STAGES) - ENABLED


@functools.lru_cache(maxsize=None)
def tiny_model_folder():
    """A tiny local model folder, for stages that check --model before they read their input (train.py)."""
    import tempfile
    from tests.tiny import save_tiny
    return save_tiny(os.path.join(tempfile.mkdtemp(prefix="robust-"), "llama"), "llama")


@functools.lru_cache(maxsize=None)
def good_records():
    """Two selected records of the built-in maze, valid input for every stage (value_estimate replays them)."""
    import agent
    from envs.maze import MazeEnv
    recs = []
    for task in (14, 12):
        conv = agent.run_episode(MazeEnv(), agent.ExpertPolicy(), task)["conversations"]
        rec = trajectory.validate_record({"item_id": f"maze_{task}", "conversations": conv})
        steps = trajectory.step_indices(rec)
        recs.append(trajectory.with_selection(rec, steps[:2], {"method": "random", "ratio": 0.3}))
    return recs


def _line(rec):
    return json.dumps(rec, ensure_ascii=False)


def _mutated(change):
    rec = json.loads(json.dumps(good_records()[1]))
    change(rec)
    return rec


def _jsonl(*lines):
    return ("\n".join(x if isinstance(x, str) else _line(x) for x in lines) + "\n").encode("utf-8")


def _set_loss(i, value):
    return lambda r: r["conversations"][i].update(loss=value)


def _plain_with_steps(r):
    """A record that has 'steps' but no selection, and loss flags that disagree with them."""
    del r["critical_steps"], r["selection"]
    r["steps"] = r["steps"][:3]


# Each case: name -> (file contents as bytes, or a callable(tmp) -> input path for odd inputs; the location the
# message must name: "line N" / "record N", or "" where only the file can be named). The second record is the bad
# one where there is one, so that a message naming the wrong line fails the test.
CASES = {
    "bad_json": (lambda: _jsonl(good_records()[0], '{"item_id": "maze_12", "conversations": [{"from'), "line 2"),
    "invalid_utf8": (lambda: _jsonl(good_records()[0]) + b'{"item_id": "maze_\xff\xfe12"}\n', "line 2"),
    "utf16": (lambda: _jsonl(*good_records()).decode().encode("utf-16"), "line 1"),
    "utf16_without_bom": (lambda: _jsonl(*good_records()).decode().encode("utf-16-le"), "line 1"),
    "lone_surrogate": (lambda: _jsonl(good_records()[0], _line(_mutated(
        lambda r: r["conversations"][2].update(value="Observation: \\ud800")))).replace(b"\\\\ud800", b"\\ud800"),
        "line 2"),
    "steps_bool": (lambda: _jsonl(good_records()[0], _mutated(lambda r: r.update(steps=[True] + r["steps"]))),
                   "line 2"),
    "steps_int": (lambda: _jsonl(good_records()[0], _mutated(lambda r: r.update(steps=3))), "line 2"),
    "critical_steps_nested": (lambda: _jsonl(good_records()[0], _mutated(lambda r: r.update(critical_steps=[[3]]))),
                              "line 2"),
    "critical_steps_bool": (lambda: _jsonl(good_records()[0], _mutated(lambda r: r.update(critical_steps=[True]))),
                            "line 2"),
    "flags_contradict_critical_steps": (lambda: _jsonl(good_records()[0], _mutated(
        lambda r: _set_loss(r["steps"][-1], True)(r))), "line 2"),
    "critical_flag_cleared": (lambda: _jsonl(good_records()[0], _mutated(
        lambda r: _set_loss(r["critical_steps"][0], False)(r))), "line 2"),
    "critical_steps_not_in_steps": (lambda: _jsonl(good_records()[0], _mutated(
        lambda r: r.update(critical_steps=[2]))), "line 2"),
    "steps_disagree_with_flags": (lambda: _jsonl(good_records()[0], _mutated(_plain_with_steps)), "line 2"),
    "steps_name_a_human_turn": (lambda: _jsonl(good_records()[0], _mutated(
        lambda r: r.update(steps=[2] + r["steps"]))), "line 2"),
    "loss_is_an_integer": (lambda: _jsonl(good_records()[0], _mutated(_set_loss(3, 1))), "line 2"),
    "deep_nesting": (lambda: _jsonl(good_records()[0], "[" * 100_000 + "]" * 100_000), "line 2"),
    "deep_nesting_in_json_list": (lambda: ("[" + _line(good_records()[0]) + ",\n" + "[" * 100_000 + "]" * 100_000
                                           + "]").encode(), "line 2"),
    "huge_integer": (lambda: _jsonl(good_records()[0], '{"item_id": 1' + "1" * 5000 + "}"), "line 2"),
    "not_an_object": (lambda: _jsonl(good_records()[0], "3"), "line 2"),
    "bad_record_in_json_list": (lambda: json.dumps([good_records()[0], _mutated(
        lambda r: r["conversations"].pop(0))]).encode(), "record 2"),
    "duplicate_item_id": (lambda: _jsonl(good_records()[0], good_records()[0]), "line 2"),
    "empty_file": (lambda: b"", ""),
    "blank_lines_only": (lambda: b"\n \n\n", ""),
    "missing_file": ("missing", ""),
    "directory_as_input": ("directory", ""),
    "directory_as_output": ("output_directory", ""),
    "output_is_the_input": ("output_is_input", ""),
}


def make_case(case, tmp):
    """(argv input, argv output, the path the message must name, the location it must name) for a case."""
    what, where = CASES[case]
    inp, out = tmp / "in.jsonl", tmp / "out.jsonl"
    if what == "missing":
        return inp, out, inp, where
    if what == "directory":
        inp.mkdir()
        return inp, out, inp, where
    inp.write_bytes(_jsonl(*good_records()))
    if what == "output_directory":
        out.mkdir()
        return inp, out, out, where
    if what == "output_is_input":
        return inp, inp, inp, where
    inp.write_bytes(what())
    return inp, out, inp, where


def rows(stages):
    """(stage, case) pairs that apply: output cases only for stages that write one file."""
    return [(s, c) for s in sorted(stages) for c in CASES
            if not (STAGES[s]["output"] == "folder" and CASES[c][0] in ("output_directory", "output_is_input"))]


def check_refusal(stage, rc, err, named, where, tmp, out):
    """What a refused run promises (a non-zero exit, a line naming the file and the place, no traceback, nothing
    left behind) for one refused run; returns the problems found (empty: the row passes)."""
    problems = []
    if rc == 0:
        problems.append("exit code 0")
    if "Traceback" in err:
        problems.append("traceback: " + err.strip().splitlines()[-1][:200])
    lines = [l for l in err.splitlines() if str(named) in l and where in l]
    if not lines:
        problems.append(f"no line naming {named} {where}: {err.strip()[-300:]!r}")
    if STAGES[stage]["output"] == "file":
        left = [p for p in STAGES[stage]["leftovers"](out) if os.path.isfile(p) and os.path.realpath(p) !=
                os.path.realpath(named)]
        if left:
            problems.append(f"left behind {left}")
    return problems


@pytest.mark.parametrize("stage,case", rows(ENABLED))
def test_malformed_input_is_one_line(stage, case, tmp_path):
    inp, out, named, where = make_case(case, tmp_path)
    out_arg = _out_dir(out) if STAGES[stage]["output"] == "folder" else out
    rc, err = run_stage(STAGES[stage]["argv"](inp, out_arg))
    assert check_refusal(stage, rc, err, named, where, tmp_path, out) == []


# Bad options: (stage, extra argv, what the one line must name). Checked before any model loads (NO_MODEL).
OPTION_CASES = [
    ("select", ["--ratio", "nan"], "--ratio"), ("select", ["--ratio", "0"], "--ratio"),
    ("select", ["--concurrency", "0"], "--concurrency"), ("select", ["--max-tokens", "0"], "--max-tokens"),
    ("select", ["--price", "cheap"], "--price"), ("select", ["--method", "complement"], "--reference"),
    ("perplexity", ["--ratio", "0"], "--ratio"), ("perplexity", ["--ratio", "1.5"], "--ratio"),
    ("perplexity", ["--ratio", "-1"], "--ratio"), ("perplexity", ["--ratio", "nan"], "--ratio"),
    ("perplexity", ["--max-length", "0"], "--max-length"), ("perplexity", ["--batch-tokens", "0"], "--batch-tokens"),
    ("perplexity", ["--limit", "0"], "--limit"),
    ("value_estimate", ["--rollouts", "0"], "--rollouts"), ("value_estimate", ["--concurrency", "0"], "--concurrency"),
    ("value_estimate", ["--gamma", "1.5"], "--gamma"), ("value_estimate", ["--threshold", "nan"], "--threshold"),
    ("value_estimate", ["--env", "webshop", "--env-server", "http://127.0.0.1:9"], "--env webshop"),
    ("value_estimate", ["--policy", "hf"], "--model"),
    ("train", ["--batch-size", "0"], "--batch-size"), ("train", ["--batch-size", "-2"], "--batch-size"),
    ("train", ["--epochs", "0"], "--epochs"),
    ("evaluate", ["--tasks", "3:1"], "--tasks"), ("evaluate", ["--max-rounds", "0"], "--max-rounds"),
]


@pytest.mark.parametrize("stage,extra,flag", [c for c in OPTION_CASES if c[0] in ENABLED],
                         ids=[f"{s}{''.join(e)}" for s, e, _ in OPTION_CASES if s in ENABLED])
def test_bad_option_is_one_line(stage, extra, flag, tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_bytes(_jsonl(*good_records()))
    rc, err = run_stage(STAGES[stage]["argv"](inp, out) + extra)
    assert rc != 0 and "Traceback" not in err
    assert [l for l in err.splitlines() if flag in l], err
    assert not [p for p in STAGES[stage]["leftovers"](out) if os.path.exists(p)]


@pytest.mark.parametrize("stage,case", [("select", "lone_surrogate"), ("perplexity", "deep_nesting"),
                                        ("value_estimate", "steps_bool"), ("perplexity", "directory_as_output")])
def test_as_a_real_process(stage, case, tmp_path):
    """The same promise through the interpreter (a subset: each run costs an interpreter start and imports)."""
    inp, out, named, where = make_case(case, tmp_path)
    rc, err = run_stage(STAGES[stage]["argv"](inp, out), subprocess_=True)
    assert check_refusal(stage, rc, err, named, where, tmp_path, out) == []
    assert len(err.strip().splitlines()) == 1, err  # one line, nothing else


# ----------------------------------------------------------------------------- select.py: items fail alone

def _records(n, seed):
    from tests.oracle_server import make_records
    return make_records(n, seed=seed, min_steps=3, max_steps=8)


def _read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f]


def test_select_items_raising_anything_fail_alone(tmp_path, monkeypatch):
    """Arbitrary exceptions in some items (and a selector bug that writes lying flags): those items are in the
    errors file with their reason, the rest are selected, and a rerun retries exactly those."""
    sel = _module("select.py")
    recs = _records(12, seed=21)
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    runs.write_jsonl(inp, recs)
    ids = [r["item_id"] for r in recs]
    boom = {ids[1]: ZeroDivisionError("division by zero"), ids[4]: KeyError("plan"),
            ids[7]: RecursionError("maximum recursion depth exceeded"), ids[9]: UnicodeEncodeError(
                "utf-8", "\ud800", 0, 1, "surrogates not allowed")}
    real = sel.select_random

    def flaky(args, rec):
        if rec["item_id"] in boom:
            raise boom[rec["item_id"]]
        out_rec = real(args, rec)
        if rec["item_id"] == ids[10]:  # a bug that marks a step the selection does not name
            out_rec["conversations"][out_rec["steps"][-1]]["loss"] = True
            out_rec["critical_steps"] = out_rec["critical_steps"][:1]
        return out_rec

    argv = ["select.py", "--input", inp, "--output", out, "--method", "random"]
    monkeypatch.setattr(sel, "select_random", flaky)
    rc, err = run_stage(argv)
    assert rc == 1 and "5 trajectories failed" in err and "Traceback" not in err, err
    failed = {e["item_id"]: e["reason"] for e in _read(f"{out}.errors.jsonl")}
    assert set(failed) == set(boom) | {ids[10]}
    assert failed[ids[1]] == "ZeroDivisionError: division by zero" and failed[ids[4]].startswith("KeyError")
    assert "RecursionError" in failed[ids[7]] and "UnicodeEncodeError" in failed[ids[9]]
    assert "loss flags" in failed[ids[10]] and "critical_steps" in failed[ids[10]]
    assert sorted(r["item_id"] for r in _read(out)) == sorted(set(ids) - set(failed))
    monkeypatch.setattr(sel, "select_random", real)
    asked = []
    monkeypatch.setattr(sel, "select_random", lambda args, rec: asked.append(rec["item_id"]) or real(args, rec))
    rc, err = run_stage(argv)
    assert rc == 0, err
    assert sorted(asked) == sorted(failed)  # only the failed items were done again
    got = _read(out)
    assert sorted(r["item_id"] for r in got) == sorted(ids) and _read(f"{out}.errors.jsonl") == []
    for r in got:
        trajectory.validate_record(r)


def test_select_odd_replies_fail_alone(tmp_path, monkeypatch):
    """Replies that are not chat completions (HTML, cut-off JSON, no choices, content of numbers) are asked again
    and then sent to the errors file; content as text parts is read; text that cannot be written fails the item.
    The run goes on, and a rerun asks only for the failures."""
    from tests import oracle_server
    sel = _module("select.py")
    srv = oracle_server.start()
    try:
        recs = _records(10, seed=22)
        inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
        runs.write_jsonl(inp, recs)
        first = lambda i: recs[i]["conversations"][0]["value"]
        plan = {0: ["html"] * 3, 1: ["truncated"] * 3, 2: ["no_choices"] * 3, 3: ["bad_content"] * 3,
                4: ["surrogate"], 5: ["parts"], 6: ["html", "truncated"]}
        for i, faults in plan.items():
            srv.per_item[first(i)] = faults
        monkeypatch.setenv("OPENAI_API_KEY", CANARY)
        argv = ["select.py", "--input", inp, "--output", out, "--base-url", srv.url, "--concurrency", 3,
                "--backoff", 0.01]
        rc, err = run_stage(argv)
        assert rc == 1 and "5 trajectories failed" in err and "Traceback" not in err, err
        failed = {e["item_id"]: e["reason"] for e in _read(f"{out}.errors.jsonl")}
        ids = [r["item_id"] for r in recs]
        assert set(failed) == {ids[i] for i in range(5)}
        assert "not a JSON chat completion" in failed[ids[0]] and "not JSON" in failed[ids[1]]
        assert "no choices" in failed[ids[2]] and "not made of text parts" in failed[ids[3]]
        assert "selection.answer" in failed[ids[4]] and "cannot be encoded" in failed[ids[4]]
        got = {r["item_id"]: r for r in _read(out)}
        assert set(got) == set(ids[5:])
        for i in (5, 6):
            assert got[ids[i]]["critical_steps"] == sorted(oracle_server.scripted_answer(recs[i])[0])
        assert got[ids[6]]["selection"]["attempts"] == 3
        srv.per_item.clear()
        before = len(srv.log)
        rc, err = run_stage(argv)
        assert rc == 0, err
        assert sorted(e[0] for e in srv.log[before:]) == sorted(first(i) for i in range(5))
        assert sorted(r["item_id"] for r in _read(out)) == sorted(ids)
    finally:
        srv.shutdown()
        srv.server_close()


def test_select_stops_at_once_when_nothing_can_succeed(tmp_path, monkeypatch):
    """No server (connection refused) and a refused key stop the run with one line, before any output exists."""
    from tests import oracle_server
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    runs.write_jsonl(inp, _records(3, seed=23))
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    rc, err = run_stage(["select.py", "--input", inp, "--output", out, "--base-url", "http://127.0.0.1:9/v1"])
    assert rc == 1 and "cannot reach http://127.0.0.1:9/v1" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not os.path.exists(f"{out}.config.json")
    srv = oracle_server.start()
    try:
        srv.faults = ["401"] * 20
        rc, err = run_stage(["select.py", "--input", inp, "--output", out, "--base-url", srv.url])
        assert rc == 1 and "stopped: HTTP 401" in err and CANARY not in err, err
        assert len(srv.log) <= 3  # the run stopped after the first refusals, it did not ask for every item
    finally:
        srv.shutdown()
        srv.server_close()


def test_select_stops_when_the_server_goes_away(tmp_path, monkeypatch):
    """A server lost mid-run: once 2 x --concurrency items in a row failed without a connection, the run stops
    (with one line) instead of spending every remaining item's retries; the failed items are in the errors file."""
    sel = _module("select.py")
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    runs.write_jsonl(inp, _records(40, seed=25))
    calls = []

    def gone(client, args, rec):
        calls.append(rec["item_id"])
        raise sel.ItemError("gave up after 9 requests: APIConnectionError: Connection error.", unreachable=True)

    monkeypatch.setattr(sel, "make_client", lambda args: object())
    monkeypatch.setattr(sel, "select_oracle", gone)
    rc, err = run_stage(["select.py", "--input", inp, "--output", out, "--base-url", "http://x/v1",
                         "--concurrency", "2"])
    assert rc == 1 and "stopped: the last 4 items could not reach http://x/v1" in err, err
    failed = _read(f"{out}.errors.jsonl")
    assert 4 <= len(failed) <= 6 and len(calls) <= 6 and out.read_text() == ""


# ----------------------------------------------------------------------------- no secret in any file

def test_canary_key_never_written(tmp_path, monkeypatch):
    """select.py and value_estimate.py, runs that succeed, fail item by item, stop, or are refused: the key is in
    no file they write and in nothing they print; the config says that a key was set."""
    from tests import oracle_server
    recs = _records(4, seed=24)
    inp, maze = tmp_path / "in.jsonl", tmp_path / "maze.jsonl"
    runs.write_jsonl(inp, recs)
    runs.write_jsonl(maze, good_records())
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(CASES["steps_bool"][0]())
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    srv = oracle_server.start()
    texts = []
    try:
        srv.per_item[recs[0]["conversations"][0]["value"]] = ["echo_key"]  # the server quotes the key back
        base = ["select.py", "--input", inp, "--base-url", srv.url]
        texts.append(run_stage(base + ["--output", tmp_path / "s1.jsonl"]))                 # one item fails
        srv.faults, srv.per_item = ["401"] * 5, {}
        srv.attempts.clear()
        texts.append(run_stage(base + ["--output", tmp_path / "s2.jsonl"]))                 # stopped by a 401
        texts.append(run_stage(["select.py", "--input", bad, "--output", tmp_path / "s3.jsonl",
                                "--base-url", srv.url]))                                    # refused input
    finally:
        srv.shutdown()
        srv.server_close()
    v = ["value_estimate.py", "--input", maze, "--env", "maze", "--rollouts", "1", "--api-key", CANARY]
    texts.append(run_stage(v + ["--output", tmp_path / "v1.jsonl", "--policy", "expert"]))  # succeeds
    texts.append(run_stage(v + ["--output", tmp_path / "v2.jsonl", "--policy", "openai", "--model", "m",
                                "--base-url", "http://127.0.0.1:9/v1", "--request-timeout", "5"]))  # no server
    texts.append(run_stage(["value_estimate.py", "--input", bad, "--env", "maze", "--api-key", CANARY,
                            "--output", tmp_path / "v3.jsonl", "--policy", "expert"]))      # refused input
    assert [rc for rc, _ in texts] == [1, 1, 1, 0, 1, 1], texts
    assert "stopped: HTTP 401" in texts[1][1], texts
    # no model server: one line, whether the policy finds out at once or every rollout fails
    assert texts[4][1].strip().splitlines()[-1].startswith("value_estimate.py: ") and "Traceback" not in texts[4][1]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"s1.jsonl.config.json", "s2.jsonl.config.json", "v1.jsonl.config.json",
            "v2.jsonl.config.json", "s1.jsonl.errors.jsonl"} <= {p.name for p in written}
    for p in written:
        assert CANARY.encode() not in p.read_bytes() and CANARY[-12:].encode() not in p.read_bytes(), p
    for _, err in texts:
        assert CANARY not in err and CANARY[-12:] not in err
    for name in ("s1", "v1"):
        assert json.loads((tmp_path / f"{name}.jsonl.config.json").read_text())["api_key_set"] is True


# ----------------------------------------------------------------------------- one writer per output

HOLDER = ("import sys, time, runs\n"
          "locks = [runs.lock_output(p) for p in sys.argv[1:]]\n"
          "print('locked', flush=True)\n"
          "time.sleep(120)\n")


def test_second_writer_refused_and_stale_lock_ignored(tmp_path):
    """A live process holding the output's lock: every appending stage refuses, naming it. The same process
    killed with SIGKILL (its lock file stays): the next run goes ahead. (perplexity.py runs without a model
    here, to stay fast: it takes the lock before it loads the model, so failing on the model shows that it got
    past the lock; tests/test_perplexity.py runs it whole.)"""
    maze = tmp_path / "maze.jsonl"
    runs.write_jsonl(maze, good_records())
    outs = {s: tmp_path / f"{s}.jsonl" for s in ("select", "perplexity", "value_estimate")}
    argv = {"select": ["select.py", "--input", maze, "--output", outs["select"], "--method", "random"],
            "perplexity": ["perplexity.py", "--input", maze, "--output", outs["perplexity"], "--model", NO_MODEL],
            "value_estimate": ["value_estimate.py", "--input", maze, "--output", outs["value_estimate"],
                               "--env", "maze", "--policy", "expert", "--rollouts", "1"]}
    holder = subprocess.Popen([PY, "-c", HOLDER, *map(str, outs.values())], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for stage, a in argv.items():
            rc, err = run_stage(a)
            assert rc == 1 and f"pid {holder.pid}" in err and "another run is writing" in err, (stage, err)
            assert "Traceback" not in err and not outs[stage].exists(), stage
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    for stage, a in argv.items():
        assert os.path.exists(f"{outs[stage]}.lock")  # left by the killed holder
        rc, err = run_stage(a)
        if stage == "perplexity":
            assert rc == 1 and f"cannot load the tokenizer of {NO_MODEL}" in err, err
            continue
        assert rc == 0, (stage, err)
        assert sorted(r["item_id"] for r in trajectory.read_records(outs[stage])) == ["maze_12", "maze_14"]


# ----------------------------------------------------------------------------- reruns that would mix settings

def test_rerun_with_other_settings_refused_unless_forced(tmp_path):
    maze = tmp_path / "maze.jsonl"
    runs.write_jsonl(maze, good_records())
    out = tmp_path / "s.jsonl"
    base = ["select.py", "--input", maze, "--output", out, "--method", "random"]
    assert run_stage(base)[0] == 0
    rc, err = run_stage(base + ["--ratio", "0.5"])
    assert rc == 1 and "ratio: 0.3 before, 0.5 now" in err and "--force" in err, err
    rc, err = run_stage(base + ["--seed", "3"])
    assert rc == 1 and "seed: 0 before, 3 now" in err, err
    assert run_stage(base + ["--ratio", "0.5", "--force"])[0] == 0
    vout = tmp_path / "v.jsonl"
    v = ["value_estimate.py", "--input", maze, "--output", vout, "--env", "maze", "--policy", "expert"]
    assert run_stage(v + ["--rollouts", "1"])[0] == 0
    rc, err = run_stage(v + ["--rollouts", "2"])
    assert rc == 1 and "rollouts: 1 before, 2 now" in err, err


# ----------------------------------------------------------------------------- report for the pending stages

def report(stages):
    """Run every row of the table for `stages` and print the rows that fail (for the stages not yet ENABLED)."""
    import tempfile
    from pathlib import Path
    failing = 0
    for stage, case in rows(stages):
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            inp, out, named, where = make_case(case, tmp)
            out_arg = _out_dir(out) if STAGES[stage]["output"] == "folder" else out
            rc, err = run_stage(STAGES[stage]["argv"](inp, out_arg))
            problems = check_refusal(stage, rc, err, named, where, tmp, out)
        failing += bool(problems)
        print(f"{'FAIL' if problems else 'ok  '} {stage:15s} {case:34s} {'; '.join(problems)[:220]}", flush=True)
    for stage, extra, flag in [c for c in OPTION_CASES if c[0] in stages]:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            inp, out = tmp / "in.jsonl", tmp / "out.jsonl"
            inp.write_bytes(_jsonl(*good_records()))
            out_arg = _out_dir(out) if STAGES[stage]["output"] == "folder" else out
            rc, err = run_stage(STAGES[stage]["argv"](inp, out_arg) + extra)
            problems = ([] if rc else ["exit code 0"]) + (["traceback"] if "Traceback" in err else []) + \
                ([] if any(flag in l for l in err.splitlines()) else [f"no line naming {flag}: {err.strip()[-200:]!r}"])
        failing += bool(problems)
        print(f"{'FAIL' if problems else 'ok  '} {stage:15s} {' '.join(extra):34s} {'; '.join(problems)[:220]}",
              flush=True)
    return failing


if __name__ == "__main__":
    sys.exit(1 if report(set(sys.argv[1:]) or PENDING) else 0)
