"""select.py --batch: the oracle's requests through the Batch API, against tests/batch_server.py (Files and Batches
endpoints in front of tests/oracle_server.py's scripted oracle): the records equal the synchronous path's for the
same answers, failures go to the errors file and a synchronous rerun finishes them, a kill at any point resumes the
same batch without a second upload or create, inputs over the limits are split, and --dry-run prices the batch."""
import importlib.util
import json
import os
import signal
import subprocess
import sys

import pytest

import batches
import oracle
import trajectory
from tests import batch_server
from tests.conftest import interrupt_when
from tests.oracle_server import make_records, scripted_answer, write_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
KEY = "sk-proj-BATCHsecretKeyDoNotLeak0123456789"

_spec = importlib.util.spec_from_file_location("atlas_select", os.path.join(ROOT, "select.py"))
sel = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sel)


@pytest.fixture
def server():
    srv = batch_server.start()
    yield srv
    srv.hold.set()
    srv.unhang.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def run_in(capsys, *argv):
    """select.main in this process (so a test can lower the module's limits): (exit code, stdout, stderr)."""
    code, msg = 0, ""
    try:
        sel.main([str(a) for a in argv])
    except SystemExit as e:
        code, msg = (e.code, "") if isinstance(e.code, int) else (1, str(e.code))
    got = capsys.readouterr()
    return code, got.out, got.err + msg


def command(inp, out, url, *more):
    return [PY, "select.py", "--input", str(inp), "--output", str(out), "--base-url", url, "--batch", "--poll",
            "0.02", *map(str, more)]


def subprocess_env():
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_BASE_URL"}
    return {**env, "OPENAI_API_KEY": KEY}


def read_out(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def state_of(out):
    with open(f"{out}.batch.json", encoding="utf-8") as f:
        return json.load(f)


def inputs(tmp_path, n, seed, **kw):
    recs = make_records(n, seed=seed, **kw)
    write_jsonl(tmp_path / "in.jsonl", recs)
    return recs, tmp_path / "in.jsonl"


def assert_scripted(out, recs):
    got = {o["item_id"]: o for o in read_out(out)}
    assert sorted(got) == sorted(r["item_id"] for r in recs)  # each exactly once
    for rec in recs:
        crit, cats = scripted_answer(rec)
        o = got[rec["item_id"]]
        trajectory.validate_record(o)
        assert o["critical_steps"] == sorted(crit) and {x["index"]: x["category"] for x in
                                                        o["selection"]["reasons"]} == cats


# ----------------------------------------------------------------------------- one run, same records as without


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_batch_records_equal_the_synchronous_ones(server, key, tmp_path, capsys, fmt):
    recs, inp = inputs(tmp_path, 10, seed=31, min_steps=2, max_steps=16)
    sync, batch = tmp_path / "sync.jsonl", tmp_path / "batch.jsonl"
    code, out, err = run_in(capsys, "--input", inp, "--output", sync, "--base-url", server.url,
                            "--response-format", fmt)
    assert code == 0, err
    assert server.uploads == server.creates == 0
    code, out, err = run_in(capsys, *command(inp, batch, server.url, "--response-format", fmt)[2:])
    assert code == 0, err
    assert "through the Batch API" in out and "1 completed; 10 completed, 0 failed of 10 requests" in out
    assert "done 10, failed 0" in out
    by_id = lambda path: {o["item_id"]: o for o in read_out(path)}  # noqa: E731
    assert by_id(batch) == by_id(sync)  # every field: steps, reasons, plan, usage, served_by, attempts, answer
    assert_scripted(batch, recs)
    assert (server.uploads, server.creates) == (1, 1)
    # the input file: one line per item, custom_id = item_id, the synchronous request's body unchanged
    st = state_of(batch)
    assert st["request"] == {"model": "gpt-4o", "ratio": 0.3, "response_format": fmt, "max_tokens": 1024}
    [b] = st["batches"]
    assert b["items"] == [r["item_id"] for r in recs] and b["collected"] and b["status"] == "completed"
    assert b["batch_id"] in server.batches and server.batches[b["batch_id"]]["input_file_id"] == b["file_id"]
    assert server.files[b["file_id"]]["meta"]["filename"] == b["name"]
    lines = [json.loads(x) for x in server.files[b["file_id"]]["data"].decode().splitlines()]
    args = sel.get_args(["--input", str(inp), "--output", str(batch), "--response-format", fmt])
    for line, rec in zip(lines, recs):
        prompt, schema, _, _ = sel.oracle_request(args, rec)
        assert line == {"custom_id": rec["item_id"], "method": "POST", "url": "/v1/chat/completions",
                        "body": oracle.chat_request(prompt, model="gpt-4o", max_tokens=1024, response_format=schema)}
    # a rerun has nothing to send: no second upload, no second batch
    code, out, _ = run_in(capsys, *command(inp, batch, server.url, "--response-format", fmt)[2:])
    assert code == 0 and "0 to select" in out and (server.uploads, server.creates) == (1, 1)


# ----------------------------------------------------------------------------- failures


def test_failures_go_to_the_errors_file_and_a_synchronous_run_finishes_them(server, key, tmp_path, capsys):
    recs, inp = inputs(tmp_path, 10, seed=32, min_steps=3, max_steps=12)
    out = tmp_path / "out.jsonl"
    first = lambda i: recs[i]["conversations"][0]["value"]  # noqa: E731
    for i, fault in {0: "garbage", 1: "echo_key", 2: "500", 4: "none_valid"}.items():
        server.per_item[first(i)] = [fault]  # the batch's one answer only: a later request is answered well
    server.line_errors[recs[3]["item_id"]] = ("server_error", "the model crashed")
    code, stdout, err = run_in(capsys, *command(inp, out, server.url)[2:])
    assert code == 1 and "5 trajectories failed" in err and "also without --batch" in err, err
    assert "done 5, failed 5" in stdout
    errors = {e["item_id"]: e["reason"] for e in read_out(f"{out}.errors.jsonl")}
    ids = [r["item_id"] for r in recs]
    assert set(errors) == {ids[i] for i in range(5)}
    assert errors[ids[0]].startswith("unparsable (one answer, through the Batch API)")
    assert errors[ids[1]].startswith("HTTP 400") and "Bearer ***" in errors[ids[1]] and KEY not in errors[ids[1]]
    assert errors[ids[2]].startswith("HTTP 500") and "server had an error" in errors[ids[2]]
    assert "server_error: the model crashed" in errors[ids[3]]
    assert "names no step" in errors[ids[4]]
    assert {o["item_id"] for o in read_out(out)} == set(ids[5:])
    # a synchronous rerun asks for exactly the five failures, once each, and finishes the output
    before = len(server.log)
    code, stdout, err = run_in(capsys, "--input", inp, "--output", out, "--base-url", server.url)
    assert code == 0, err
    assert "done 5, failed 0, skipped 5" in stdout
    assert sorted(e[0] for e in server.log[before:]) == sorted(first(i) for i in range(5))
    assert_scripted(out, recs)
    assert read_out(f"{out}.errors.jsonl") == [] and (server.uploads, server.creates) == (1, 1)


def test_an_expired_or_refused_batch_fails_its_unanswered_items(server, key, tmp_path, capsys):
    recs, inp = inputs(tmp_path, 6, seed=33)
    out = tmp_path / "out.jsonl"
    server.answer_limit = 4  # the batch expires after four answers
    code, stdout, err = run_in(capsys, *command(inp, out, server.url)[2:])
    assert code == 1 and "done 4, failed 2" in stdout and "1 expired" in stdout, stdout + err
    errors = {e["item_id"]: e["reason"] for e in read_out(f"{out}.errors.jsonl")}
    assert set(errors) == {r["item_id"] for r in recs[4:]}
    assert all("ended expired without an answer for it" in why for why in errors.values())
    # a rerun with --batch sends only those two, in a new batch; this one fails validation (too many requests)
    server.answer_limit, server.max_requests = None, 1
    code, stdout, err = run_in(capsys, *command(inp, out, server.url)[2:])
    assert code == 1 and "done 0, failed 2, skipped 4" in stdout, stdout + err
    errors = {e["item_id"]: e["reason"] for e in read_out(f"{out}.errors.jsonl")}
    assert set(errors) == {r["item_id"] for r in recs[4:]}
    assert all("failed: too_many_requests: 2 requests, more than 1" in why for why in errors.values())
    assert server.creates == 2 and len(server.files[state_of(out)["batches"][1]["file_id"]]["data"].splitlines()) == 2
    server.max_requests = 50_000
    code, stdout, err = run_in(capsys, *command(inp, out, server.url)[2:])
    assert code == 0 and "done 2, failed 0, skipped 4" in stdout, err
    assert_scripted(out, recs)


# ----------------------------------------------------------------------------- kills: the same batch, paid once


@pytest.mark.parametrize("where", ["after_upload", "before_create", "after_create"])
def test_a_kill_between_upload_and_create_resumes_the_same_batch(server, tmp_path, where):
    """SIGKILL while an upload or a create is in flight (stored but unanswered, not yet made, made but unanswered):
    the rerun finds what the server holds and makes nothing twice."""
    recs, inp = inputs(tmp_path, 8, seed=34)
    out = tmp_path / "out.jsonl"
    server.hang = where
    proc = subprocess.Popen(command(inp, out, server.url), cwd=ROOT, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert server.hanging.wait(60), "the run never reached the upload or the create"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    [b] = state_of(out)["batches"]  # the plan was kept before the upload
    assert b["batch_id"] is None and (b["file_id"] is None) == (where == "after_upload")
    assert (server.uploads, server.creates) == (1, int(where == "after_create"))
    server.hang = None
    server.unhang.set()
    r = subprocess.run(command(inp, out, server.url), cwd=ROOT, env=subprocess_env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (server.uploads, server.creates) == (1, 1)  # no second upload, no second batch
    assert_scripted(out, recs)
    [b] = state_of(out)["batches"]
    [(bid, made)] = server.batches.items()
    assert b["batch_id"] == bid and b["file_id"] == made["input_file_id"] and b["collected"]
    assert all(n == 1 for n in server.attempts.values()) and len(server.attempts) == 8  # each answer paid once


def test_an_interrupt_while_polling_resumes_the_same_batch(server, tmp_path):
    """Ctrl-C between create and download: one line, the batch kept; a synchronous run or other request settings
    are refused while it is not collected; the rerun collects it with nothing sent again."""
    recs, inp = inputs(tmp_path, 8, seed=35)
    out = tmp_path / "out.jsonl"
    server.hold.clear()  # the batch stays in_progress
    rc, err = interrupt_when(command(inp, out, server.url), lambda: server.retrieves >= 2, env=subprocess_env())
    assert rc == 130 and "interrupted; rerun the same command to resume" in err, err
    [b] = state_of(out)["batches"]
    assert b["batch_id"] in server.batches and not b["collected"] and b["status"] in ("validating", "in_progress")
    assert read_out(out) == []
    sync = [PY, "select.py", "--input", str(inp), "--output", str(out), "--base-url", server.url]
    for cmd, why in [(sync, "8 requests are in Batch API batches not collected yet"),
                     (command(inp, out, server.url, "--max-tokens", 512),
                      "made with other settings (max_tokens: 1024 before, 512 now)")]:
        r = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and why in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert server.log == [] and (server.uploads, server.creates) == (1, 1)
    server.hold.set()
    r = subprocess.run(command(inp, out, server.url), cwd=ROOT, env=subprocess_env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (server.uploads, server.creates) == (1, 1) and all(n == 1 for n in server.attempts.values())
    assert_scripted(out, recs)
    assert state_of(out)["batches"][0]["collected"]


# ----------------------------------------------------------------------------- limits and price


@pytest.mark.parametrize("limit", ["requests", "bytes"])
def test_inputs_over_the_limits_are_split(server, key, tmp_path, capsys, monkeypatch, limit):
    """With lowered limits (also on the stand-in, which refuses a file over them) the requests fill several files
    in order, each as full as the limits allow; a request too big for any file fails alone."""
    recs, inp = inputs(tmp_path, 11, seed=36, min_steps=6, max_steps=6)
    recs[5]["conversations"][2]["value"] += " long observation" * 2000
    write_jsonl(inp, recs)
    out = tmp_path / "out.jsonl"
    args = sel.get_args(["--input", str(inp), "--output", str(out)])
    line_of = sel.batch_line_of(args, recs)
    size = {r["item_id"]: len(line_of(r["item_id"])) for r in recs}
    normal = max(n for i, n in size.items() if i != recs[5]["item_id"])
    max_requests, max_bytes = (3, 10 ** 9) if limit == "requests" else (10 ** 6, int(2.5 * normal))
    if limit == "requests":  # the long one still fails alone: lower the byte limit below it, above the others
        max_bytes = (normal * 3 + size[recs[5]["item_id"]]) // 2
        assert 3 * normal < max_bytes < size[recs[5]["item_id"]]
    monkeypatch.setattr(batches, "BATCH_MAX_REQUESTS", max_requests)
    monkeypatch.setattr(batches, "BATCH_MAX_BYTES", max_bytes)
    server.max_requests, server.max_bytes = max_requests, max_bytes
    code, stdout, _ = run_in(capsys, *command(inp, out, server.url, "--dry-run")[2:])
    planned = int(stdout.split("), in ")[1].split(" batches")[0])
    assert code == 0 and "1 requests too big for a batch file" in stdout
    code, stdout, err = run_in(capsys, *command(inp, out, server.url)[2:])
    assert code == 1 and "done 10, failed 1" in stdout, stdout + err
    [e] = read_out(f"{out}.errors.jsonl")
    assert e["item_id"] == recs[5]["item_id"] and "more than a Batch API file may hold" in e["reason"]
    files = [server.files[b["file_id"]]["data"] for b in state_of(out)["batches"]]
    assert server.creates == len(files) == planned == (4 if limit == "requests" else 5)
    sent = [[json.loads(x)["custom_id"] for x in f.splitlines()] for f in files]
    assert sum(sent, []) == [r["item_id"] for r in recs if r is not recs[5]]  # in order, each once
    for n, f in enumerate(files):
        assert len(sent[n]) <= max_requests and len(f) <= max_bytes
        if n + 1 < len(files):  # full: the next file's first request would not have fitted
            assert len(sent[n]) == max_requests or len(f) + size[sent[n + 1][0]] > max_bytes
    assert_scripted(out, [r for r in recs if r is not recs[5]])


def test_dry_run_prices_the_batch_at_half(server, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    recs, inp = inputs(tmp_path, 10, seed=37)
    out = tmp_path / "out.jsonl"
    for price in ([], ["--price", "5,15"]):
        code, stdout, err = run_in(capsys, *command(inp, out, server.url, "--dry-run", *price)[2:])
        assert code == 0, err
        sync = float(stdout.split("estimated cost: $")[1].split(" ")[0])
        batch = float(stdout.split("Batch API (--batch): $")[1].split(" ")[0])
        assert sync > 0 and batch == pytest.approx(sync / 2, abs=0.006) and "in 1 batches" in stdout
    assert server.log == [] and server.uploads == 0 and not out.exists()
