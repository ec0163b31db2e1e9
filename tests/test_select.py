"""select.py and oracle.py: the prompt, the answer parser, the pool of requests, and whole runs through the real
openai client against tests/oracle_server.py (faults, kill-and-resume, key hygiene, malformed inputs, ablations, dry
run), plus the stdlib-shadowing guard and what select.py imports."""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import answers
import oracle
import trajectory
from tests import oracle_server
from tests.oracle_server import make_records, scripted_answer, write_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
KEY = "sk-proj-TESTSECRETkeyDoNotLeak0123456789"

# the stage module, imported under another name than `select` (under `select` it would hand back the stdlib)
_spec = importlib.util.spec_from_file_location("atlas_select", os.path.join(ROOT, "select.py"))
sel = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sel)


def run_select(*args, key=KEY, timeout=120):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    if key:
        env["OPENAI_API_KEY"] = key
    return subprocess.run([PY, "select.py", *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def read_out(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture
def server():
    srv = oracle_server.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def rec_with(n_steps, seed=0):
    return make_records(1, seed=seed, min_steps=n_steps, max_steps=n_steps)[0]


# ----------------------------------------------------------------------------- prompt

def test_prompt_labels_every_turn_and_states_the_budget():
    rec = rec_with(10)
    steps = trajectory.step_indices(rec)
    assert steps == list(range(3, 22, 2)) and trajectory.budget(10, 0.3) == 3
    prompt = sel.build_prompt(rec, trajectory.budget(10, 0.3))
    for i, t in enumerate(rec["conversations"]):
        assert f"conversation[{i}] ({t['from']}): {t['value']}\n" in prompt + "\n"
    assert "A maximum of 3 steps may be chosen from the conversation." in prompt
    assert f"Only the gpt turns conversation[{', '.join(map(str, steps))}] are steps" in prompt
    for name in answers.CATEGORIES:
        assert f"- {name}: Steps where the LLM agent" in prompt
    assert "2. **The critical steps are:** conversation[...]" in prompt
    js = sel.build_prompt(rec, 3, "json")
    assert '"critical_steps"' in js and "**The critical steps are:**" not in js
    assert oracle_server.read_prompt(prompt) == (rec["conversations"][0]["value"], steps, 3)


# ----------------------------------------------------------------------------- parsing

STEPS = [3, 5, 7, 9, 11, 13]


@pytest.mark.parametrize("answer,budget,kept,dropped", [
    ("1. **The high-level plan is:** go\n2. **The critical steps are:** conversation[3, 7]\n3. **Reason:** x",
     3, [3, 7], (0, 0, 0)),
    ("The critical steps are: conversation[7], conversation[3]\nReason: ...", 3, [7, 3], (0, 0, 0)),
    ("The critical steps are: conversation[3-9]\nReason: ...", 4, [3, 5, 7, 9], (0, 0, 0)),  # a range: its steps
    ("The critical steps are: conversation[3 to 7]", 4, [3, 5, 7], (0, 0, 0)),
    ("The critical steps are: conversation[3, 5, 7, 9]\nReason:", 2, [3, 5], (0, 0, 2)),  # first k kept
    ("The critical steps are: conversation[0, 1, 2, 99, 3]", 3, [3], (4, 0, 0)),
    ("The critical steps are: conversation[5, 5], conversation[5]", 3, [5], (0, 2, 0)),
    ("### The critical steps are\nconversation[3]\nconversation[11]\n\n### Reason\nconversation[5] is noted",
     3, [3, 11], (0, 0, 0)),
    # a "critical steps are" phrase inside the plan is not the list; a blank line ends an unheaded list
    ("The high-level plan is: the critical steps are those that matter.\n"
     "The critical steps are: conversation[9]\n\nconversation[9] works because conversation[11] failed", 3,
     [9], (0, 0, 0)),
    ("2. Critical steps: Conversation [13]", 1, [13], (0, 0, 0)),
    ("Critical Steps Identified: conversation[5]; conversation[9]", 3, [5, 9], (0, 0, 0)),
])
def test_parse_text_indices(answer, budget, kept, dropped):
    got, reasons, _, drop = answers.parse_text_answer(answer, STEPS, budget)
    assert got == kept
    assert (drop["not_a_step"], drop["duplicate"], drop["over_budget"]) == dropped
    assert [r["index"] for r in reasons] == kept


def test_parse_text_categories_reasons_and_plan():
    answer = ("1. **The high-level plan is:** Find the key, then open the door.\n"
              "2. **The critical steps are:** conversation[3, 7, 9, 11]\n"
              "3. **Reason:**\n"
              "- **conversation[3]** (planning): sets the sub-goals before conversation[4] arrives.\n"
              "- conversation[7] is a key observation: the key is seen.\n"
              "- conversation[9]: a Pivotal Action - opens the door.\n"
              "- conversation[11] (Self-Correction / recall): retries after failing.")
    kept, reasons, plan, _ = answers.parse_text_answer(answer, STEPS, 4)
    assert kept == [3, 7, 9, 11] and plan == "Find the key, then open the door."
    assert [r["category"] for r in reasons] == ["Plan Creation", "Critical Observation", "Critical Action",
                                                "Self Correction"]
    assert "before conversation[4] arrives" in reasons[0]["reason"]  # a mention of a non-chosen turn: same reason
    # categories given inline in the list, no Reason part
    kept, reasons, _, _ = answers.parse_text_answer(
        "The critical steps are: conversation[5] (Critical Action), conversation[13] (Plan Creation)", STEPS, 3)
    assert [(r["index"], r["category"]) for r in reasons] == [(5, "Critical Action"), (13, "Plan Creation")]


@pytest.mark.parametrize("answer", [
    "I cannot determine the critical steps.",
    "The critical steps are: conversation[...]\nReason: none",
    "The critical steps are: conversation[0, 2, 99]",  # names only non-steps
    "",
])
def test_parse_text_rejects_unusable_answers(answer):
    with pytest.raises(oracle.ParseError):
        answers.parse_text_answer(answer, STEPS, 3)


def test_parse_json():
    ans = {"plan": "p", "critical_steps": [{"index": 9, "category": "Self Correction", "reason": "r9"},
                                           {"index": "3", "category": "planning", "reason": "r3"},
                                           {"index": 4, "category": "Critical Action", "reason": "human"},
                                           {"index": 9, "category": "Critical Action", "reason": "dup"},
                                           {"index": 5, "category": "Critical Action", "reason": "over"}]}
    kept, reasons, plan, drop = answers.parse_json_answer("```json\n" + json.dumps(ans) + "\n```", STEPS, 2)
    assert kept == [9, 3] and plan == "p" and drop == {"not_a_step": 1, "duplicate": 1, "over_budget": 1}
    assert reasons == [{"index": 9, "category": "Self Correction", "reason": "r9"},
                       {"index": 3, "category": "Plan Creation", "reason": "r3"}]
    # a raw newline inside a string (small local models write them) is not a reason to fail the item
    raw = ('{"plan": "line 1\nline 2", '
           '"critical_steps": [{"index": 3, "category": "Critical Action", "reason": "a\tb"}]}')
    assert answers.parse_json_answer(raw, STEPS, 2)[0] == [3]
    for bad in ['{"plan": "x"', '{"plan": "x"}', '{"critical_steps": [{"index": 1}]}', "[3, 5]"]:
        with pytest.raises(oracle.ParseError):
            answers.parse_json_answer(bad, STEPS, 2)


def test_json_schema_bounds_indices_items_and_strings():
    """The schema lets a constrained decoder name only steps, 1..budget of them; llama.cpp's form also bounds the
    strings (OpenAI's strict mode rejects maxLength, so its form must not carry it)."""
    for kind in ("json", "json_object"):
        fmt = answers.response_format_for(STEPS, kind, 2)
        schema = fmt["json_schema"]["schema"] if kind == "json" else fmt["schema"]
        crit = schema["properties"]["critical_steps"]
        assert crit["minItems"] == 1 and crit["maxItems"] == 2
        assert crit["items"]["properties"]["index"]["enum"] == list(STEPS)
        has_max_length = "maxLength" in json.dumps(schema)
        assert has_max_length == (kind == "json_object")


def test_parse_every_server_style_and_synonym():
    """300 trajectories, the test server's three free-text styles and its JSON: indices and categories come back."""
    styles = set()
    for rec in make_records(300, seed=2, min_steps=1, max_steps=30):
        steps = trajectory.step_indices(rec)
        k = trajectory.budget(len(steps), 0.3)
        style, picks = oracle_server.scripted_choice(rec["conversations"][0]["value"], steps, k)
        styles.add(style)
        want = ([i for i, _, _ in picks], [c for _, _, c in picks])
        for answer, parse in [(oracle_server.render_text(style, picks), answers.parse_text_answer),
                              (oracle_server.render_json(picks), answers.parse_json_answer)]:
            kept, reasons, plan, dropped = parse(answer, steps, k)
            assert (kept, [r["category"] for r in reasons]) == want and plan
            assert all(r["reason"] for r in reasons) and sum(dropped.values()) == 0
    assert styles == {"A", "B", "C"}


def test_redact():
    oracle.SECRETS.append("local-secret-token")
    try:
        msg = oracle.redact("Bearer local-secret-token; Incorrect API key provided: sk-proj-abc***wxyz. task-1234")
        assert "local-secret-token" not in msg and "abc" not in msg and "task-1234" in msg
        assert sel.redact is oracle.redact  # select.py prints and writes through the same one
    finally:
        oracle.SECRETS.remove("local-secret-token")


# ----------------------------------------------------------------------------- oracle.py: the pool of requests

def _pool(work, items, threads=3):
    finished, inside, overlap = [], [0], []

    def finish(item, result, err):
        inside[0] += 1
        overlap.append(inside[0])
        time.sleep(0.001)
        finished.append((item, result, err and str(err)))
        inside[0] -= 1
    return oracle.run_pool(work, finish, items, threads, where="http://x/v1"), finished, max(overlap or [0])


def test_pool_items_fail_alone_and_finish_one_at_a_time():
    def work(i):
        if i % 5 == 0:
            raise KeyError(i)
        if i % 7 == 0:
            raise oracle.ItemError("HTTP 400: too long")
        return i * i

    fatal, finished, overlap = _pool(work, range(1, 41))
    assert fatal is None and overlap == 1 and sorted(i for i, _, _ in finished) == list(range(1, 41))
    for i, result, err in finished:
        want = ("KeyError: " + str(i)) if i % 5 == 0 else "HTTP 400: too long" if i % 7 == 0 else None
        assert (result, err) == ((None, want) if want else (i * i, None)), i


def test_pool_stops_on_a_fatal_error_or_a_server_gone_away():
    def refused(i):
        if i >= 3:
            raise oracle.FatalError("HTTP 401 from OpenAI: Incorrect API key")
        return i

    fatal, finished, _ = _pool(refused, range(100), threads=1)
    assert str(fatal) == "HTTP 401 from OpenAI: Incorrect API key" and [i for i, _, _ in finished] == [0, 1, 2]

    def gone(i):  # one reachable item resets the count: only 2 x threads unreachable in a row stop the run
        if i == 4 or i >= 10:
            raise oracle.ItemError("gave up after 9 requests: APIConnectionError", unreachable=True)
        return i

    fatal, finished, _ = _pool(gone, range(100), threads=1)
    assert str(fatal).startswith("the last 4 items could not reach http://x/v1 (gave up after 9 requests")
    assert [i for i, _, _ in finished] == list(range(14))
    fatal, finished, _ = _pool(gone, range(100), threads=3)  # more in flight, more allowed to fail together
    assert str(fatal).startswith("the last 6 items could not reach http://x/v1")


def test_oracle_imports_no_stage_torch_or_sdk():
    """select.py starts fast: oracle.py (and select.py itself) import only the standard library, tqdm and the record
    modules; the openai SDK is imported when the first client is made."""
    code = ("import sys, importlib.util; import oracle; heavy = {'torch', 'transformers', 'openai', 'tiktoken'}; "
            "assert not (heavy | {'trajectory', 'runs', 'devices', 'tqdm'}) & set(sys.modules), sys.modules.keys(); "
            "s = importlib.util.spec_from_file_location('atlas_select', 'select.py'); "
            "s.loader.exec_module(importlib.util.module_from_spec(s)); assert not heavy & set(sys.modules)")
    r = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------------- whole runs against the server

def test_faults_are_retried_and_failures_rerun(server, tmp_path):
    recs = make_records(12, seed=3, min_steps=4, max_steps=14)
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(inp, recs)
    plan = {0: ["429", "429"], 1: ["500", "503"], 2: ["slow"], 3: ["garbage"], 4: ["badjson", "429"],
            5: ["out_of_range"], 6: ["none_valid"] * 3, 7: ["429"] * 4, 8: ["echo_key"]}
    for i, faults in plan.items():
        server.per_item[recs[i]["conversations"][0]["value"]] = faults
    server.slow = 5.0
    r = run_select("--input", inp, "--output", out, "--base-url", server.url, "--concurrency", 4,
                   "--backoff", 0.01, "--timeout", 2.0, "--max-retries", 3, "--parse-retries", 2)
    assert r.returncode == 1, r.stderr  # failures make the exit non-zero ...
    assert "3 trajectories failed" in r.stderr and "done 9, failed 3, skipped 0" in r.stdout
    got = {o["item_id"]: o for o in read_out(out)}
    errors = {e["item_id"]: e["reason"] for e in read_out(str(out) + ".errors.jsonl")}
    ids = [x["item_id"] for x in recs]
    assert set(errors) == {ids[6], ids[7], ids[8]} and set(got) == set(ids) - set(errors)  # ... never made up
    assert "names no step" in errors[ids[6]] and "unparsable after 3 answers" in errors[ids[6]]
    assert "gave up after 4 requests" in errors[ids[7]] and "RateLimitError" in errors[ids[7]]
    assert errors[ids[8]].startswith("HTTP 400") and "Bearer ***" in errors[ids[8]] and KEY not in errors[ids[8]]
    for i, rec in enumerate(recs):
        if rec["item_id"] not in got:
            continue
        o, (crit, cats) = got[rec["item_id"]], scripted_answer(rec)
        trajectory.validate_record(o)
        sel_ = o["selection"]
        # each fault cost exactly one extra request; out_of_range is a usable answer whose extras are dropped
        assert sel_["attempts"] == (1 if i == 5 else len(plan.get(i, [])) + 1), (i, sel_["attempts"])
        if i == 5:
            k, steps = sel_["budget"], trajectory.step_indices(rec)
            rest = [s for s in steps if s not in crit][:k - len(crit)]
            assert o["critical_steps"] == sorted(crit + rest)
            assert sel_["dropped"] == {"not_a_step": 4, "duplicate": 1,
                                       "over_budget": len(steps) - len(crit) - len(rest)}
            continue
        assert o["critical_steps"] == sorted(crit)
        assert {r["index"]: r["category"] for r in sel_["reasons"]} == cats
        assert trajectory.loss_turns(o) == o["critical_steps"] and o["steps"] == trajectory.step_indices(rec)
        assert sel_["dropped"] == {"not_a_step": 0, "duplicate": 0, "over_budget": 0}
        assert sel_["usage"]["prompt_tokens"] > 0 and sel_["method"] == "oracle" and sel_["ratio"] == 0.3
    assert "categories: " in r.stdout and "Plan Creation" in r.stdout
    # the server really saw every fault (the client's retries went over the wire)
    seen = {}
    for first, attempt, fault, _ in server.log:
        seen.setdefault(first, []).append(fault)
    assert seen[recs[1]["conversations"][0]["value"]] == ["500", "503", "ok"]
    assert seen[recs[7]["conversations"][0]["value"]] == ["429"] * 4
    # rerun: only the three failures are asked again, and now succeed; nothing is duplicated
    server.per_item.clear()
    n_before = len(server.log)
    r = run_select("--input", inp, "--output", out, "--base-url", server.url, "--backoff", 0.01)
    assert r.returncode == 0, r.stderr
    assert "done 3, failed 0, skipped 9" in r.stdout and len(server.log) - n_before == 3
    outs = read_out(out)
    assert sorted(o["item_id"] for o in outs) == sorted(ids)
    assert read_out(str(out) + ".errors.jsonl") == []


@pytest.mark.parametrize("fmt,kind", [("json", "json_schema"), ("json_object", "json_object")])
def test_json_response_format(server, tmp_path, fmt, kind):
    recs = make_records(6, seed=4)
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(inp, recs)
    r = run_select("--input", inp, "--output", out, "--base-url", server.url, "--response-format", fmt)
    assert r.returncode == 0, r.stderr
    assert [e[3] for e in server.log] == [kind] * 6  # the request carried the response_format and its schema
    for o, rec in zip(sorted(read_out(out), key=lambda o: o["item_id"]), sorted(recs, key=lambda r: r["item_id"])):
        crit, cats = scripted_answer(rec)
        assert o["critical_steps"] == sorted(crit) and o["selection"]["response_format"] == fmt
        assert {x["index"]: x["category"] for x in o["selection"]["reasons"]} == cats
        assert o["selection"]["plan"] == "Find the target, then act on it."


def test_sigkill_then_resume(tmp_path):
    srv = oracle_server.start(latency=0.1)
    try:
        recs = make_records(60, seed=5)
        inp, out = tmp_path / "in.json", tmp_path / "out.jsonl"
        with open(inp, "w") as f:
            json.dump(recs, f)  # AgentTraj-L as published: one JSON list
        env = {**os.environ, "OPENAI_API_KEY": KEY}
        cmd = [PY, "select.py", "--input", str(inp), "--output", str(out), "--base-url", srv.url,
               "--concurrency", "4"]
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and (not out.exists() or out.read_bytes().count(b"\n") < 12):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        n_killed = out.read_bytes().count(b"\n")
        assert 12 <= n_killed < 60
        requested_before = {e[0] for e in srv.log}
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        outs = read_out(out)
        assert sorted(o["item_id"] for o in outs) == sorted(x["item_id"] for x in recs)  # each exactly once
        for o, rec in zip(sorted(outs, key=lambda o: o["item_id"]), sorted(recs, key=lambda r: r["item_id"])):
            assert o["critical_steps"] == sorted(scripted_answer(rec)[0])
        # paid twice only for what was in flight at the kill (at most --concurrency requests)
        asked_twice = sum(1 for v in srv.attempts.values() if v > 1)
        assert asked_twice <= 4 and len(requested_before) - n_killed <= 4
        assert f"skipped {n_killed}" in r.stdout
    finally:
        srv.shutdown()
        srv.server_close()


def test_api_key_never_written_or_printed(server, tmp_path):
    recs = make_records(4, seed=6)
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(inp, recs)
    server.per_item[recs[0]["conversations"][0]["value"]] = ["echo_key"]
    r1 = run_select("--input", inp, "--output", out, "--base-url", server.url)
    assert r1.returncode == 1 and "done 3, failed 1" in r1.stdout
    server.faults = ["401"]  # every item's first attempt: the server rejects the key and quotes it
    server.per_item.clear()
    server.attempts.clear()
    r2 = run_select("--input", inp, "--output", tmp_path / "out2.jsonl", "--base-url", server.url)
    assert r2.returncode != 0 and "HTTP 401" in r2.stderr and "Incorrect API key provided: ***." in r2.stderr
    texts = [r1.stdout, r1.stderr, r2.stdout, r2.stderr]
    texts += [p.read_text() for p in tmp_path.iterdir() if p.is_file()]
    assert len(texts) >= 9  # in, out, errors, config of both runs
    for t in texts:
        assert KEY not in t and KEY[-12:] not in t
    r3 = run_select("--input", inp, "--output", tmp_path / "o3.jsonl", key=None)  # OpenAI without a key
    assert r3.returncode != 0 and "set OPENAI_API_KEY" in r3.stderr


# ----------------------------------------------------------------------------- malformed inputs

def _lines(*recs):
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in recs) + "\n"


def _bad(mutate):
    r = rec_with(3, seed=9)
    mutate(r)
    return r


GOOD = rec_with(3, seed=8)
MALFORMED = {
    "not_json": (_lines(GOOD, '{"item_id": "x", "conversations": ['), "line 2", "not valid JSON"),
    "missing_item_id": (_lines(GOOD, _bad(lambda r: r.pop("item_id"))), "line 2", "missing field 'item_id'"),
    "missing_conversations": (_lines(_bad(lambda r: r.pop("conversations"))), "line 1", "'conversations'"),
    "role_order": (_lines(GOOD, _bad(lambda r: r["conversations"][2].update({"from": "gpt"}))), "line 2",
                   "roles must alternate"),
    "empty_value": (_lines(_bad(lambda r: r["conversations"][3].update({"value": "  "}))), "line 1",
                    "empty"),
    "duplicate_item_id": (_lines(GOOD, GOOD), "line 2", "duplicate item_id"),
    "no_steps": (_lines(GOOD, _bad(lambda r: [t.update({"loss": False}) for t in r["conversations"][1::2]])),
                 "line 2", "no steps"),
    "bad_record_in_json_list": (json.dumps([GOOD, _bad(lambda r: r["conversations"].pop(0))]), "record 2",
                                "roles must alternate"),
    "empty_file": ("", "", "holds no records"),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_input_fails_naming_file_and_record(kind, tmp_path):
    text, where, problem = MALFORMED[kind]
    inp = tmp_path / ("in.json" if kind == "bad_record_in_json_list" else "in.jsonl")
    inp.write_text(text)
    r = run_select("--input", inp, "--output", tmp_path / "out.jsonl", "--method", "random")
    assert r.returncode != 0 and not (tmp_path / "out.jsonl").exists()
    assert str(inp) in r.stderr and where in r.stderr and problem in r.stderr, r.stderr


def test_corrupt_output_or_reference_fails(tmp_path):
    recs = make_records(3, seed=10)
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(inp, recs)
    assert run_select("--input", inp, "--output", out, "--method", "random").returncode == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text(lines[0] + lines[1][:50] + "\n" + lines[2])  # damaged in the middle: not a kill
    r = run_select("--input", inp, "--output", out, "--method", "random")
    assert r.returncode != 0 and f"{out}: line 2" in r.stderr
    ref = tmp_path / "ref.jsonl"
    bad = trajectory.with_selection(recs[0], trajectory.step_indices(recs[0])[:1], {"method": "x"})
    bad["steps"] = bad["steps"][1:] + [len(bad["conversations"]) + 1]
    ref.write_text(json.dumps(bad) + "\n")
    r = run_select("--input", inp, "--output", tmp_path / "c.jsonl", "--method", "complement", "--reference", ref)
    assert r.returncode != 0 and str(ref) in r.stderr and "line 1" in r.stderr
    # a valid selection, but of another trajectory under the same item_id
    other = rec_with(len(trajectory.step_indices(recs[1])) + 1, seed=99)
    other["item_id"] = recs[1]["item_id"]
    ref.write_text(json.dumps(trajectory.with_selection(other, trajectory.step_indices(other)[:1], {})) + "\n")
    r = run_select("--input", inp, "--output", tmp_path / "c.jsonl", "--method", "complement", "--reference", ref)
    assert r.returncode != 0 and str(ref) in r.stderr and "record 2" in r.stderr and "not a selection of it" in r.stderr


# ----------------------------------------------------------------------------- ablations and dry run

def test_random_is_seeded_resumable_and_within_budget(tmp_path):
    recs = make_records(30, seed=11, min_steps=1, max_steps=20)
    inp, half = tmp_path / "in.jsonl", tmp_path / "half.jsonl"
    write_jsonl(inp, recs)
    write_jsonl(half, recs[:15])
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    assert run_select("--input", inp, "--output", a, "--method", "random", "--seed", 1).returncode == 0
    assert run_select("--input", half, "--output", b, "--method", "random", "--seed", 1).returncode == 0
    r = run_select("--input", inp, "--output", b, "--method", "random", "--seed", 1)  # resume the other half
    assert "done 15, failed 0, skipped 15" in r.stdout
    assert run_select("--input", inp, "--output", c, "--method", "random", "--seed", 2).returncode == 0
    A, B, C = ({o["item_id"]: o["critical_steps"] for o in read_out(p)} for p in (a, b, c))
    assert A == B and A != C
    for o in read_out(a):
        T = len(o["steps"])
        assert len(o["critical_steps"]) == trajectory.budget(T, 0.3) == max(1, int(0.3 * T + 1e-9))
        assert o["selection"] == {"method": "random", "ratio": 0.3, "budget": len(o["critical_steps"]), "seed": 1}


def test_complement_picks_the_unpicked_and_counts_shortfall(tmp_path):
    recs = make_records(20, seed=12, min_steps=1, max_steps=12)
    inp, ref, comp = tmp_path / "in.jsonl", tmp_path / "ref.jsonl", tmp_path / "comp.jsonl"
    write_jsonl(inp, recs)
    assert run_select("--input", inp, "--output", ref, "--method", "random", "--ratio", 0.6).returncode == 0
    refs = {o["item_id"]: o for o in read_out(ref)}
    dropped = recs[0]["item_id"]
    write_jsonl(ref, [o for k, o in refs.items() if k != dropped])  # one item failed in the reference run
    r = run_select("--input", inp, "--output", comp, "--method", "complement", "--reference", ref)
    assert r.returncode == 1 and "done 19, failed 1" in r.stdout
    assert read_out(str(comp) + ".errors.jsonl")[0]["item_id"] == dropped
    short = 0
    for o in read_out(comp):
        rc = refs[o["item_id"]]["critical_steps"]
        want = min(len(rc), len(o["steps"]) - len(rc))
        assert not set(o["critical_steps"]) & set(rc) and len(o["critical_steps"]) == want
        assert o["selection"]["short_by"] == len(rc) - want and o["selection"]["reference_method"] == "random"
        short += len(rc) - want
    assert short > 0 and f"complement short by {short} steps" in r.stdout


def test_dry_run_sends_nothing_and_prices(server, tmp_path):
    recs = make_records(10, seed=13)
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_jsonl(inp, recs)
    r = run_select("--input", inp, "--output", out, "--base-url", server.url, "--dry-run", key=None)
    assert r.returncode == 0, r.stderr
    chars = sum(len(sel.build_prompt(x, trajectory.budget(len(trajectory.step_indices(x)), 0.3))) for x in recs)
    assert "requests: 10" in r.stdout and "characters / 4" in r.stdout
    tokens = int(r.stdout.split("prompt tokens: ")[1].split(" ")[0].replace(",", ""))
    assert abs(tokens - chars / 4) < 10 * 10  # chars/4 plus a few tokens of chat overhead per request
    answer = int(r.stdout.split("answer tokens: ~")[1].split(" ")[0].replace(",", ""))
    cost = float(r.stdout.split("estimated cost: $")[1].split(" ")[0])
    assert cost == pytest.approx(round(tokens * 2.5e-6 + answer * 10e-6, 2), abs=0.006)
    r2 = run_select("--input", inp, "--output", out, "--dry-run", "--price", "5,15", key=None)
    cost2 = float(r2.stdout.split("estimated cost: $")[1].split(" ")[0])
    assert cost2 == pytest.approx(round(tokens * 5e-6 + answer * 15e-6, 2), abs=0.006)
    assert server.log == [] and not out.exists()


# ----------------------------------------------------------------------------- the name select.py

def test_select_py_does_not_shadow_stdlib_select():
    """From the project root, where select.py is first on sys.path: the stdlib's select still reaches every
    importer (subprocess, asyncio, torch, torchrun's train.py), and importing it runs none of the stage."""
    code = ("import subprocess, socket, asyncio, sys, select; assert hasattr(select, 'select') and "
            "hasattr(select, 'poll'); assert 'trajectory' not in sys.modules and 'tqdm' not in sys.modules; "
            "import torch; print(subprocess.run(['true']).returncode)")
    cmds = [[PY, "-c", code], [PY, "select.py", "--help"]]
    if os.path.exists(os.path.join(ROOT, "train.py")):
        cmds.append([PY, "train.py", "--help"])
    procs = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in cmds]
    outs = [p.communicate(timeout=180) + (p.returncode,) for p in procs]  # run side by side: torch imports are slow
    assert outs[0][2] == 0 and outs[0][0].strip() == "0", outs[0][1]
    assert outs[1][2] == 0 and "--ratio" in outs[1][0] and "--response-format" in outs[1][0], outs[1][1]
    for out, err, rc in outs[2:]:
        assert rc == 0 and "usage" in out, err


def test_data_readme_example_is_a_valid_output_record():
    text = open(os.path.join(ROOT, "data", "README.md"), encoding="utf-8").read()
    block = text.split("## The record format")[1].split("```json\n")[1].split("```")[0]
    rec = trajectory.validate_record(json.loads(block))
    assert trajectory.loss_turns(rec) == rec["critical_steps"] == [3] and rec["steps"] == [3, 5, 7]
    assert len(rec["critical_steps"]) <= trajectory.budget(len(rec["steps"]), rec["selection"]["ratio"])
    src = {**rec, "conversations": [{**t, "loss": True} if i in rec["steps"] else t
                                    for i, t in enumerate(rec["conversations"])]}
    del src["steps"], src["critical_steps"], src["selection"]
    assert trajectory.with_selection(src, [3], rec["selection"]) == rec
