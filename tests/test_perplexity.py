"""perplexity.py: one-pass step PPLs equal the per-prefix computation; top-m % respects the budget with
deterministic ties; resumes after a kill (single process and torchrun part files) without duplicates."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import perplexity
import runs
import devices
import trajectory
from tests.tiny import make_records, save_tiny, tiny_model, tiny_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def naive_step_ppls(model, input_ids, spans):
    """The reference: a separate forward pass on the prefix that ends with each step, full logits, no batching."""
    out = {}
    for step, (start, end) in spans.items():
        ids = torch.tensor([input_ids[:end]])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
        tgt = ids[0, start:end]
        nll = -logp[torch.arange(start - 1, end - 1), tgt]
        out[step] = float(torch.exp(nll.mean()))
    return out


@pytest.mark.parametrize("family", ["llama", "qwen", "mistral"])
def test_one_pass_equals_naive(family):
    tok = tiny_tokenizer(family)
    model = tiny_model(family, tok)
    recs = make_records(5, seed=1, min_steps=2, max_steps=6)
    items = []
    for rec in recs:
        t = trajectory.tokenize_record(rec, tok)
        assert set(t["spans"]) == set(trajectory.step_indices(rec)), "every step needs a span"
        items.append((rec["item_id"], t["input_ids"], t["spans"]))
    # one batch with padding (different lengths) and batches of one must both match the reference
    batched = perplexity.step_ppls(model, items, chunk=7)
    single = [perplexity.step_ppls(model, [it])[0] for it in items]
    for (item_id, ids, spans), got, got1 in zip(items, batched, single):
        ref = naive_step_ppls(model, ids, spans)
        assert set(got) == set(ref) and len(ref) >= 2
        for s in ref:
            assert got[s] == pytest.approx(ref[s], rel=1e-5, abs=0), (item_id, s)
            assert got1[s] == pytest.approx(ref[s], rel=1e-5, abs=0), (item_id, s)
    # the scores really differ between steps (a constant would pass the comparisons above only by accident)
    assert len({round(v, 6) for d in batched for v in d.values()}) > 5


def test_spans_are_the_trained_tokens():
    """The tokens scored for a step are the tokens train.py puts loss on (labels != -100) when all steps train."""
    tok = tiny_tokenizer("llama")
    for rec in make_records(3, seed=2, min_steps=2, max_steps=5):
        t = trajectory.tokenize_record(rec, tok)
        from_spans = sorted(p for s, e in t["spans"].values() for p in range(s, e))
        from_labels = [p for p, l in enumerate(t["labels"]) if l != -100]
        assert from_spans == from_labels
        assert all(t["labels"][p] == t["input_ids"][p] for p in from_labels)


def test_top_steps_budget_and_ties():
    scores = {3: 2.0, 5: 9.0, 7: 2.0, 9: 2.0, 11: 1.0, 13: 9.0, 15: 2.0, 17: 0.5, 19: 3.0, 21: 2.0}
    k = trajectory.budget(len(scores), 0.3)
    assert k == 3
    assert perplexity.top_steps(scores, k) == [5, 13, 19]
    # ties at the cut go to the earlier step, whatever order the dict came in
    assert perplexity.top_steps(scores, 4) == [3, 5, 13, 19]
    assert perplexity.top_steps(dict(reversed(list(scores.items()))), 4) == [3, 5, 13, 19]
    assert perplexity.top_steps({3: 1.0, 5: 1.0, 7: 1.0}, 2) == [3, 5]


def test_token_budget_batches():
    """The one batcher of train.py (micro-batches: rows and tokens) and perplexity.py (forward passes: tokens)."""
    lengths = [5, 30, 12, 12, 40, 3]
    batches = devices.token_budget_batches(lengths, 36)
    # longest first (40 alone: over the budget), stable among equal lengths, each cut as late as the budget allows
    assert batches == [[4], [1], [2, 3, 0], [5]]
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 36
    assert devices.token_budget_batches(lengths, 1000, max_rows=2) == [[4, 1], [2, 3], [0, 5]]
    assert devices.token_budget_batches([], 10) == []


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("ppl")
    folder = save_tiny(d / "llama", "llama")
    recs = make_records(24, seed=3, min_steps=1, max_steps=12)
    inp = d / "in.jsonl"
    runs.write_jsonl(inp, recs)
    ref = d / "ref.jsonl"
    perplexity.main(["--input", str(inp), "--output", str(ref), "--model", folder, "--batch-tokens", "600"])
    return d, folder, recs, inp, {r["item_id"]: r for r in trajectory.read_records(ref)}


def test_cli_selection(tiny_run):
    d, folder, recs, inp, ref = tiny_run
    assert set(ref) == {r["item_id"] for r in recs}
    for rec in recs:
        out = ref[rec["item_id"]]
        steps = trajectory.step_indices(rec)
        sel = out["selection"]
        assert sel["method"] == "perplexity" and sel["ratio"] == 0.3 and sel["model"] == folder
        scores = {int(s): v for s, v in sel["scores"].items()}
        assert sorted(scores) == steps
        k = trajectory.budget(len(steps), 0.3)
        assert len(out["critical_steps"]) == k
        assert min(scores[s] for s in out["critical_steps"]) >= max(
            [scores[s] for s in steps if s not in out["critical_steps"]], default=0)
        assert trajectory.loss_turns(out) == out["critical_steps"]


def _lines(path):
    with open(path) as f:
        return [json.loads(l) for l in f]


def test_resume_after_kill(tiny_run, tmp_path):
    """Kill a run mid-way (scoring slowed down so the kill lands mid-run), rerun: same records, no duplicates."""
    d, folder, recs, inp, ref = tiny_run
    out = tmp_path / "out.jsonl"
    slow = ("import sys, time, perplexity; f = perplexity.step_ppls\n"
            "def slow(*a, **k):\n    time.sleep(0.2); return f(*a, **k)\n"
            "perplexity.step_ppls = slow; perplexity.main(sys.argv[1:])")
    args = ["--input", str(inp), "--output", str(out), "--model", folder, "--batch-tokens", "1"]
    proc = subprocess.Popen([PY, "-c", slow] + args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(out.read_text().splitlines())
    assert 3 <= n_before < len(recs), "the kill must land mid-run"
    with open(out, "a") as f:
        f.write('{"item_id": "tiny_0", "conv')  # what a kill in the middle of a write leaves
    perplexity.main(args)
    got = _lines(out)
    assert len(got) == len(recs) == len({r["item_id"] for r in got})
    for r in got:
        assert r["critical_steps"] == ref[r["item_id"]]["critical_steps"]
        for s, v in r["selection"]["scores"].items():
            assert v == pytest.approx(ref[r["item_id"]]["selection"]["scores"][s], rel=1e-5)


def test_merge_leftover_parts(tiny_run, tmp_path, capsys):
    """A killed torchrun run leaves OUTPUT.partR files: the next run (any world size) skips and merges them."""
    d, folder, recs, inp, ref = tiny_run
    out = tmp_path / "out.jsonl"
    ids = [r["item_id"] for r in recs]
    runs.write_jsonl(out, [ref[i] for i in ids[:4]])
    runs.write_jsonl(f"{out}.part0", [ref[i] for i in ids[4:7]])
    with open(f"{out}.part3", "w") as f:  # a rank of a bigger run, killed mid-write
        f.write(json.dumps(ref[ids[7]]) + "\n" + json.dumps(ref[ids[8]])[:50])
    perplexity.main(["--input", str(inp), "--output", str(out), "--model", folder])
    assert f"{len(recs) - 8} to score" in capsys.readouterr().out
    got = _lines(out)
    assert sorted(r["item_id"] for r in got) == sorted(ids)
    assert not list(tmp_path.glob("out.jsonl.part*"))


@pytest.mark.skipif(not os.path.exists(os.path.join(os.path.dirname(PY), "torchrun")), reason="no torchrun")
def test_torchrun_two_ranks_equal_single(tiny_run, tmp_path):
    d, folder, recs, inp, ref = tiny_run
    out = tmp_path / "out.jsonl"
    subprocess.run([os.path.join(os.path.dirname(PY), "torchrun"), "--nproc_per_node", "2", "--master_port", "29517",
                    "perplexity.py", "--input", str(inp), "--output", str(out), "--model", folder,
                    "--batch-tokens", "600"], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    got = _lines(out)
    assert [r["item_id"] for r in got] == [r["item_id"] for r in recs]  # merged in input order
    for r in got:
        assert r["critical_steps"] == ref[r["item_id"]]["critical_steps"]
        for s, v in r["selection"]["scores"].items():
            assert v == pytest.approx(ref[r["item_id"]]["selection"]["scores"][s], rel=1e-5)
    assert not list(tmp_path.glob("out.jsonl.part*"))
