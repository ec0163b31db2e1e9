"""--report-to: train.py and evaluate.py mirror their metrics into a tracker, here TensorBoard's event files (local,
offline; the tracking extra: pip install -r requirements-tracking.txt, which .ci/run installs). The scalars read back
must equal what the stage wrote to its own files."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.tiny import make_records, save_tiny

PY = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def scalars(folder):
    """{tag: [(step, value)]} of every event file under folder/tensorboard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = {}
    root = os.path.join(folder, "tensorboard")
    for name in sorted(os.listdir(root)):
        acc = EventAccumulator(os.path.join(root, name))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def test_unknown_or_missing_trackers_are_refused_in_one_line(tmp_path):
    r = subprocess.run([PY, "evaluate.py", "--env", "maze", "--policy", "expert", "--tasks", "0:1", "--output",
                        str(tmp_path / "r.jsonl"), "--report-to", "tensorboard,nope"], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--report-to nope: expected none or a comma-separated list" in r.stderr
    assert not (tmp_path / "r.jsonl").exists()
    if importlib.util.find_spec("wandb") is None:  # an extra that is not installed: named, with the install line
        r = subprocess.run([PY, "train.py", "--data", "x", "--model", "y", "--output", str(tmp_path / "o"),
                            "--report-to", "wandb"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "wandb package is not installed" in r.stderr, r.stderr


def test_train_and_evaluate_mirror_their_metrics_into_tensorboard(tmp_path):
    pytest.importorskip("tensorboard", reason="the tracking extra: pip install -r requirements-tracking.txt")
    model = save_tiny(tmp_path / "qwen", "qwen")
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_records(4, seed=2)))
    out = tmp_path / "run"
    r = subprocess.run([PY, "train.py", "--data", str(data), "--model", model, "--output", str(out), "--batch-size",
                        "2", "--epochs", "1", "--max-length", "512", "--dtype", "float32", "--report-to",
                        "tensorboard"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    got = scalars(out)
    assert [s for s, _ in got["loss"]] == [m["step"] for m in rows] == [1, 2]
    assert [v for _, v in got["loss"]] == pytest.approx([m["loss"] for m in rows], rel=1e-6)
    assert {"lr", "grad_norm", "tokens_per_s"} <= set(got)
    res = tmp_path / "eval" / "maze.jsonl"
    r = subprocess.run([PY, "evaluate.py", "--env", "maze", "--policy", "expert", "--tasks", "0:3", "--output",
                        str(res), "--report-to", "tensorboard"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = scalars(res.parent)
    assert got["maze/success_rate"] == [(3, 1.0)] and got["maze/episodes"] == [(3, 3.0)]
    assert [v for _, v in got["maze/reward"]] == [1.0, 1.0, 1.0]
