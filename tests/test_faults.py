"""Faults a long run meets, on real processes: a full disk (a tmpfs of a few hundred KB, filled to the byte we
choose), a read-only folder, and Ctrl-C (SIGINT) — in select.py, evaluate.py and train.py. Each must end with one
line that says what happened and that a rerun resumes, no traceback; the rerun must finish with nothing lost or
duplicated. (train.py's final save failing inside save_pretrained, the ranks' data check and evaluate.py's Ctrl-C
are in tests/test_train.py and tests/test_evaluate.py.)

Mounting a tmpfs needs root (CAP_SYS_ADMIN); where it cannot be mounted the full-disk tests are skipped, saying so."""
import json
import os
import signal
import subprocess
import sys

import pytest

from tests import oracle_server
from tests.conftest import ROOT, interrupt_when
from tests.oracle_server import make_records, scripted_answer

PY = sys.executable
KEY = "sk-test-faults"
QUIET = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "OPENAI_API_KEY": KEY}


class Disk:
    """A tmpfs of `kb` KB at `path`; fill(free_kb) leaves that much free (in whole 4 KB pages), free() empties
    the filler again (the user who frees space before the rerun)."""

    def __init__(self, path, kb):
        self.path, self.filler = path, path / "filler"
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kb}k", "tmpfs", str(path)], capture_output=True,
                           text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs for a full disk here ({r.stderr.strip() or r.returncode})")

    def available(self):
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, free_kb=0):
        self.free()
        with open(self.filler, "wb") as f:
            f.write(b"\0" * max(0, self.available() - free_kb * 1024))
        assert abs(self.available() - free_kb * 1024) <= 4096, self.available()

    def free(self):
        if self.filler.exists():
            self.filler.unlink()

    def read_only(self):
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)

    def close(self):
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def mounted(tmp_path, kb):
    (tmp_path / "disk").mkdir()
    d = Disk(tmp_path / "disk", kb)
    yield d
    d.close()


@pytest.fixture
def disk(tmp_path):
    yield from mounted(tmp_path, 512)


@pytest.fixture
def big_disk(tmp_path):
    """4 MB: the tiny model's resumable state (~1.7 MB) and its final folder (~0.5 MB)."""
    yield from mounted(tmp_path, 4096)


def lines_of(stderr):
    """stderr's lines, without progress bars (train.py's rank-0 tqdm ignores TQDM_DISABLE)."""
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.strip() and "it/s]" not in line
            and "%|" not in line]


def one_line(r, starts):
    lines = lines_of(r.stderr)
    assert len(lines) == 1 and lines[0].startswith(starts) and "Traceback" not in r.stderr, r.stderr[-3000:]
    return lines[0]


def jsonl(path):
    """The complete records of a JSONL file (a write cut by a full disk may leave a partial last line, which the
    rerun cuts off: runs.open_resumable)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


# ----------------------------------------------------------------------------- select.py

@pytest.fixture
def oracle():
    srv = oracle_server.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def select_cmd(inp, out, url, *more):
    return [PY, "select.py", "--input", str(inp), "--output", str(out), "--base-url", url, "--concurrency", "2",
            *more]


def test_select_full_disk_one_line_then_the_rerun_finishes(disk, oracle, tmp_path):
    recs = make_records(40, seed=11)
    inp = tmp_path / "in.json"
    inp.write_text(json.dumps(recs))
    out = disk.path / "critical.jsonl"
    disk.fill(free_kb=24)  # room for the lock, the settings and a few records of ~2-4 KB
    r = subprocess.run(select_cmd(inp, out, oracle.url), cwd=ROOT, env=QUIET, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0
    line = one_line(r, "select.py: ")
    assert "free space and rerun" in line and str(disk.path) in line, line
    kept = jsonl(out) if out.exists() else []
    assert len(kept) < len(recs)  # the disk was full before the end: the test ran out of space
    disk.free()
    r = subprocess.run(select_cmd(inp, out, oracle.url), cwd=ROOT, env=QUIET, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    outs = jsonl(out)
    assert sorted(o["item_id"] for o in outs) == sorted(x["item_id"] for x in recs)  # each exactly once
    by_id = {o["item_id"]: o for o in outs}
    assert all(by_id[x["item_id"]]["critical_steps"] == sorted(scripted_answer(x)[0]) for x in recs)


def test_select_on_a_disk_full_from_the_start_is_one_line_and_leaves_nothing(disk, oracle, tmp_path):
    inp = tmp_path / "in.json"
    inp.write_text(json.dumps(make_records(3, seed=2)))
    disk.fill(free_kb=0)
    out = disk.path / "critical.jsonl"
    r = subprocess.run(select_cmd(inp, out, oracle.url), cwd=ROOT, env=QUIET, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0
    one_line(r, "select.py: ")
    assert sorted(p.name for p in disk.path.iterdir()) == ["filler"]  # no lock, no half-written settings


def test_select_dry_run_on_a_read_only_folder(disk, oracle, tmp_path):
    """--dry-run writes nothing, so a folder it cannot write to is no reason to refuse it."""
    inp = tmp_path / "in.json"
    inp.write_text(json.dumps(make_records(3, seed=2)))
    disk.read_only()
    r = subprocess.run(select_cmd(inp, disk.path / "critical.jsonl", oracle.url, "--dry-run"), cwd=ROOT, env=QUIET,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "3 trajectories" in r.stdout or "3 to select" in r.stdout or "$" in r.stdout, r.stdout


def test_select_ctrl_c_one_line_then_the_rerun_finishes(tmp_path):
    srv = oracle_server.start(latency=0.2)
    try:
        recs = make_records(30, seed=12)
        inp, out = tmp_path / "in.json", tmp_path / "out.jsonl"
        inp.write_text(json.dumps(recs))
        cmd = select_cmd(inp, out, srv.url)
        rc, err = interrupt_when(cmd, lambda: out.exists() and out.read_bytes().count(b"\n") >= 3, env=QUIET)
        assert rc == 130, err[-3000:]
        lines = lines_of(err)
        assert len(lines) == 1 and "interrupted" in lines[0] and "rerun" in lines[0] and "Traceback" not in err, err
        n = len(jsonl(out))
        assert 3 <= n < len(recs)
        r = subprocess.run(cmd, cwd=ROOT, env=QUIET, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert sorted(o["item_id"] for o in jsonl(out)) == sorted(x["item_id"] for x in recs)
    finally:
        srv.shutdown()
        srv.server_close()


# ----------------------------------------------------------------------------- evaluate.py

def evaluate_cmd(out, *more):
    return [PY, "evaluate.py", "--env", "maze", "--policy", "expert", "--tasks", "0:25", "--output", str(out), *more]


def test_evaluate_full_disk_one_line_naming_the_file_then_the_rerun_finishes(disk, tmp_path):
    out, traj = disk.path / "maze.jsonl", disk.path / "maze_trajectories.jsonl"
    disk.fill(free_kb=16)  # the trajectories (a few KB each) fill it within the 25 episodes
    cmd = evaluate_cmd(out, "--save-trajectories", str(traj))
    r = subprocess.run(cmd, cwd=ROOT, env=QUIET, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    line = one_line(r, "evaluate.py: ")
    assert str(disk.path) in line and "free space and rerun" in line, line
    assert len(jsonl(out)) < 25
    disk.free()
    r = subprocess.run(cmd, cwd=ROOT, env=QUIET, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = jsonl(out)
    assert sorted(x["task_id"] for x in rows) == list(range(25)) and all(x["success"] for x in rows)
    assert sorted(x["item_id"] for x in jsonl(traj)) == sorted(f"maze_{i}" for i in range(25))


def test_evaluate_report_png_goes_beside_the_results(tmp_path):
    """--report without --report-png draws beside the first results file, not into the current folder."""
    out = tmp_path / "res" / "maze.jsonl"
    out.parent.mkdir()
    r = subprocess.run(evaluate_cmd(out), cwd=ROOT, env=QUIET, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    r = subprocess.run([PY, os.path.join(ROOT, "evaluate.py"), "--report", str(out)], cwd=cwd, env=QUIET,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not (cwd / "results").exists() and list(cwd.iterdir()) == []
    assert (out.parent / "table1.png").exists()


# ----------------------------------------------------------------------------- train.py

def train_cmd(data, model, out, *more):
    return [PY, "train.py", "--data", str(data), "--model", str(model), "--output", str(out), "--batch-size", "2",
            "--epochs", "1", "--max-length", "512", "--save-minutes", "0", "--seed", "0", *more]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.tiny import make_records as tiny_records, save_tiny
    tmp = tmp_path_factory.mktemp("faults_train")
    model = save_tiny(tmp / "model", "qwen")
    data = tmp / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in tiny_records(4, seed=3)))
    ref = tmp / "ref"
    r = subprocess.run(train_cmd(data, model, ref), cwd=ROOT, env=QUIET, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(os.listdir(ref)) == ["config.json", "final", "metrics.jsonl", "state"]  # the lock released
    return model, data, ref


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def test_train_full_disk_at_the_final_save_then_the_rerun_completes(big_disk, tiny, tmp_path):
    """The output on a disk with room for the resumable state but not the final HF folder: one line (naming the
    save and the rerun), no final/ (nor a half one), and the rerun with --resume writes a final/ whose weights
    equal the uninterrupted run's."""
    from transformers import AutoModelForCausalLM
    model, data, ref = tiny
    final_kb = folder_bytes(ref / "final") // 1024
    before_final_kb = (folder_bytes(ref) - folder_bytes(ref / "final")) // 1024
    disk = big_disk
    assert before_final_kb + final_kb < 3900, "the tiny model no longer fits the test's disk"
    out = disk.path / "run"
    disk.fill(free_kb=before_final_kb + 8 + final_kb // 2)  # the state fits (and the lock), half of final/ does
    r = subprocess.run(train_cmd(data, model, out), cwd=ROOT, env=QUIET, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 1, r.stderr[-3000:]
    line = one_line(r, "train.py: ")
    assert "final" in line and "rerun with --resume" in line, line
    assert (out / "state" / "latest").exists() and not (out / "final").exists()
    assert not (out / "final.partial").exists()
    disk.free()
    r = subprocess.run(train_cmd(data, model, out, "--resume"), cwd=ROOT, env=QUIET, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    got = AutoModelForCausalLM.from_pretrained(out / "final").state_dict()
    want = AutoModelForCausalLM.from_pretrained(ref / "final").state_dict()
    assert got.keys() == want.keys() and all((got[k] == want[k]).all() for k in want)


def test_train_on_a_full_disk_leaves_no_folder(disk, tiny):
    """Refused at the start for want of space: one line, and no output folder holding only a .lock."""
    model, data, _ = tiny
    disk.fill(free_kb=0)
    out = disk.path / "run"
    r = subprocess.run(train_cmd(data, model, out), cwd=ROOT, env=QUIET, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 1
    line = one_line(r, "train.py: ")
    assert str(out) in line and "No space left" in line, line
    assert not out.exists(), sorted(p.name for p in out.iterdir())


def test_expert_server_runs_as_its_docstring_says():
    """`python tests/expert_server.py --env maze ...` from the project root (not as a module)."""
    proc = subprocess.Popen([PY, "tests/expert_server.py", "--env", "maze", "--tasks", "0:2", "--port", "0"],
                            cwd=ROOT, env=QUIET, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert proc.poll() is None and first.strip(), proc.stderr.read()[-3000:]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


# ----------------------------------------------------------------------------- a moved output folder

def test_a_moved_output_folder_resumes_and_another_model_is_still_refused(tmp_path):
    """Settings name a model folder (and input files) by what they hold (runs.identity), not by their absolute
    path: the run's folder copied elsewhere, with its model, resumes there; other weights under the same path
    are refused."""
    import shutil
    from tests.tiny import save_tiny
    run = tmp_path / "run"
    model = save_tiny(run / "model", "qwen")
    cmd = lambda root, tasks: [PY, "evaluate.py", "--env", "maze", "--policy", "expert", "--model",  # noqa: E731
                               str(root / "model"), "--tasks", tasks, "--output", str(root / "maze.jsonl")]
    r = subprocess.run(cmd(run, "0:3"), cwd=ROOT, env=QUIET, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and os.path.isdir(model), r.stderr[-3000:]
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, moved)
    r = subprocess.run(cmd(moved, "0:4"), cwd=ROOT, env=QUIET, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "3 already in" in r.stdout and "running 1" in r.stdout, r.stdout
    assert sorted(x["task_id"] for x in jsonl(moved / "maze.jsonl")) == [0, 1, 2, 3]
    weights = moved / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # other weights, same path, same size
    weights.write_bytes(bytes(data))
    r = subprocess.run(cmd(moved, "0:5"), cwd=ROOT, env=QUIET, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert "model_id" in one_line(r, "evaluate.py: ")


def test_identity_names_contents():
    import runs
    assert runs.identity("gpt-4o") == "gpt-4o" and runs.identity(None) is None
    from tests.tiny import save_tiny
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        a = save_tiny(os.path.join(tmp, "a"), "qwen")
        f = os.path.join(tmp, "ids.txt")
        open(f, "w").write("1\n2\n")
        first = runs.identity(f)
        open(f, "w").write("1\n3\n")
        assert first.startswith("sha256:") and runs.identity(f) != first
        assert runs.identity(a).startswith("folder:") and runs.identity(a) == runs.identity(a + "/")
