"""scripts/paper.sh (the paper's driver, which demo.sh runs at laptop size) end to end at its smallest size: a tiny
model built from a config, 2 ranks on gloo, the built-in maze (held-in) and wordle (held-out), the stand-in oracle
of tests/oracle_server.py (waited for through ORACLE_READY, as the demo's is), and the random, complement and
perplexity selectors. The report must hold Tables 1, 2, 3 and 6 with the rows the run made and the episode counts it
ran; a rerun must redo nothing."""
import json
import os
import subprocess
import sys

import pytest

from tests import oracle_server
from tests.tiny import save_tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(env):
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", "paper.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)


def _episodes(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paper")
    model = save_tiny(tmp / "model", "qwen")
    srv = oracle_server.start()
    out = tmp / "out"
    # the oracle is waited for as demo.sh's is (ORACLE_READY): here on the stand-in, already up
    (tmp / "oracle").mkdir()
    (tmp / "oracle" / "oracle_server.json").write_text(json.dumps({"url": srv.url + "/v1", "pid": os.getpid()}))
    ready = f"{sys.executable} {os.path.join(ROOT, 'scripts', 'llama_oracle.py')} wait --dir {tmp / 'oracle'}"
    env = {**os.environ, "OUT": str(out), "MODEL": model, "PY": sys.executable,
           "TRAIN_ENVS": "maze", "HELDOUT_ENVS": "wordle", "N_TRAIN": "4", "N_EVAL": "1", "RATIOS": "0.3",
           "SELECTORS": "oracle random complement perplexity", "ORACLE_URL": srv.url + "/v1",
           "ORACLE_MODEL": "stand-in", "OPENAI_API_KEY": "sk-test", "ORACLE_ARGS": "--concurrency 2",
           "ORACLE_READY": ready,
           "NPROC": "2", "BATCH": "2", "EPOCHS": "1", "MAX_LENGTH": "4096", "MAX_NEW_TOKENS": "8",
           "MAX_CONTEXT": "2048", "EVAL_CONCURRENCY": "1", "TABLE6_ENVS": "maze", "TABLE6_N": "1",
           "OMP_NUM_THREADS": "1"}
    first = _run(env)
    second = _run(env) if first.returncode == 0 else first
    srv.shutdown()
    return out, first, second


def test_driver_finishes(run):
    out, first, second = run
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]


def test_every_row_trained_and_evaluated(run):
    out, first, _ = run
    labels = ["complete", "random@0.3", "perplexity@0.3", "critical@0.3", "noncritical@0.3"]
    for label in labels:
        assert (out / "train" / label / "final" / "config.json").exists(), label
    for label in labels + ["base"]:
        for env in ("maze", "wordle"):
            eps = _episodes(out / "results" / f"{label}_{env}.jsonl")
            assert len(eps) == 1 and eps[0]["env"] == env, (label, env)


def test_table6_one_episode_per_critical_step_plus_scratch(run):
    out, _, _ = run
    sel = _episodes(out / "table6" / "maze_selection.jsonl")
    eps = _episodes(out / "table6" / "maze.jsonl")
    assert len(sel) == 1
    starts = sorted((e.get("start") is None, e.get("start") or 0) for e in eps)
    assert len(eps) == len(sel[0]["critical_steps"]) + 1
    assert sum(e.get("start") is None for e in eps) == 1
    assert sorted(e["start"] for e in eps if e.get("start") is not None) == sel[0]["critical_steps"], starts


def test_report_holds_the_four_tables(run):
    out, _, _ = run
    report = (out / "report.txt").read_text()
    for title in ("Table 1", "Table 2", "Table 3", "Table 6"):
        assert title in report, report
    for row in ("complete", "random@0.3", "critical@0.3", "noncritical@0.3", "perplexity@0.3", "base"):
        assert row in report, (row, report)
    shares = (out / "shares.txt").read_text()
    assert "maze" in shares and "critical@0.3" in shares


def test_rerun_redoes_nothing(run):
    _, _, second = run
    # every training stage of the rerun finds its final/ folder
    assert second.stdout.count("final: exists") == 5, second.stdout[-3000:]
