"""train.py against a plain PyTorch reference on a tiny Qwen2 (tied embeddings), on the CPU.
    pytest -q tests/test_train.py

Launches of train.py (each costs seconds of start-up), shared by the tests below:
  A1  python train.py ... --save-every 2 --stop-after 3      a job that leaves after step 3 (last state: step 3,
                                                             saved at the end of its epoch of one step); its records
                                                             name an oracle selection (the same tokens as B's)
  A2  python train.py ... --resume                           continues it: step 4, then saves
  B   torchrun --nproc_per_node 2 train.py ... --activation-checkpointing   the same run on 2 ranks (gloo)
  K   B again, killed by SIGKILL of torchrun's process group after its first automatic save; then --resume
  three refused launches on B's finished folder, two bad-data launches (missing model folder, empty data), and
  one step on records of two selections.
Every optimizer step takes the whole data set (--batch-size 10 > 9 trainable records), so the reference needs
no data order: 4 steps of AdamW on sum(CE over all loss tokens) / count, with the untrimmed sequences. The
ranks get uneven work: 5 vs 4 trajectories, 3 vs 2 micro-batches (rank 1 runs an empty one), and rank 0 the long
records, so uneven loss-token counts.
"""
import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import interrupt_when
from tests.tiny import make_records, save_tiny, tiny_tokenizer
from trajectory import IGNORE_INDEX, tokenize_record, trim_after_last_loss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
TORCHRUN = os.path.join(os.path.dirname(PY), "torchrun")
LR, STEPS, WARMUP, MAXLEN = 1e-3, 4, 1, 512
FLAGS = ["--epochs", "4", "--batch-size", "10", "--micro-batch-size", "2", "--lr", str(LR), "--warmup-ratio",
         "0.25", "--max-length", str(MAXLEN), "--seed", "1", "--dtype", "float32"]  # fp32 on any CPU


def data_records():
    recs = make_records(8, seed=11, words=(3, 12), max_steps=4)
    cut = make_records(1, seed=12, words=(60, 60), min_steps=4, max_steps=4)[0]   # 981 tokens: 3 of 4 steps cut
    lost = make_records(1, seed=13, words=(200, 200), min_steps=1, max_steps=1)[0]  # its only step is cut
    cut["item_id"], lost["item_id"] = "cut", "lost"
    return recs + [cut, lost]


def launch(cmd, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **(env_extra or {})}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


def metrics(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(l) for l in f]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    model = save_tiny(tmp / "qwen", "qwen")
    data = tmp / "data.jsonl"
    with open(data, "w") as f:
        for rec in data_records():
            f.write(json.dumps(rec) + "\n")
    return tmp, model, data


def with_selections(path, *selections):
    """data_records() again at `path`, record i naming selections[i % len(selections)]: the same tokens and loss
    flags, only the `selection` field differs."""
    with open(path, "w") as f:
        for i, rec in enumerate(data_records()):
            f.write(json.dumps({**rec, "selection": selections[i % len(selections)]}) + "\n")
    return str(path)


ORACLE = {"method": "oracle", "ratio": 0.3, "model": "gpt-4o"}


@pytest.fixture(scope="module")
def runs(inputs):
    tmp, model, data = inputs
    a, b = str(tmp / "a"), str(tmp / "b")
    common = ["train.py", "--data", str(data), "--model", model] + FLAGS
    common_a = ["train.py", "--data", with_selections(tmp / "oracle.jsonl", ORACLE), "--model", model] + FLAGS
    a1 = launch([PY] + common_a + ["--output", a, "--save-every", "2", "--stop-after", "3", "--peak-tflops", "0.5"])
    assert a1.returncode == 0, a1.stderr[-3000:]
    a1_metrics = metrics(a)
    a2 = launch([PY] + common_a + ["--output", a, "--save-every", "2", "--resume"])
    assert a2.returncode == 0, a2.stderr[-3000:]
    rb = launch([TORCHRUN, "--standalone", "--nproc_per_node", "2"] + common +
                ["--output", b, "--activation-checkpointing"])
    assert rb.returncode == 0, rb.stderr[-3000:]
    return dict(model=model, data=data, a=a, b=b, a1=a1, a1_metrics=a1_metrics, a2=a2, rb=rb, tmp=tmp)


@pytest.fixture(scope="module")
def reference(runs):
    """4 optimizer steps in plain PyTorch, one sequence at a time, untrimmed, no FSDP."""
    from transformers import AutoModelForCausalLM
    tok = tiny_tokenizer("qwen")
    model = AutoModelForCausalLM.from_pretrained(runs["model"], dtype=torch.float32)
    data = [tokenize_record(r, tok, MAXLEN) for r in data_records()]
    data = [d for d in data if d["n_loss_tokens"]]
    count = sum(d["n_loss_tokens"] for d in data)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    losses = []
    for step in range(STEPS):
        lr = LR * (step + 1) / WARMUP if step < WARMUP else \
            LR * 0.5 * (1 + math.cos(math.pi * (step - WARMUP) / (STEPS - WARMUP)))
        ce = sum(F.cross_entropy(model(torch.tensor([d["input_ids"]])).logits[0, :-1],
                                 torch.tensor(d["labels"][1:]), reduction="sum") for d in data)
        (ce / count).backward()
        losses.append(ce.item() / count)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        opt.zero_grad()
    return dict(model=model, losses=losses, n=len(data), count=count)


def state_dict(folder):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).state_dict()


def test_two_ranks_equal_one_process_and_reference(runs, reference):
    ref = reference["losses"]
    a, b = [m["loss"] for m in metrics(runs["a"])], [m["loss"] for m in metrics(runs["b"])]
    assert [m["step"] for m in metrics(runs["b"])] == [1, 2, 3, 4]
    assert metrics(runs["b"])[0]["loss_tokens"] == reference["count"]
    assert b == pytest.approx(ref, rel=1e-5) and a == pytest.approx(ref, rel=1e-5)
    assert ref[-1] < ref[0] - 0.01  # it learns
    sa, sb, sr = state_dict(os.path.join(runs["a"], "final")), state_dict(os.path.join(runs["b"], "final")), \
        reference["model"].state_dict()
    init = state_dict(runs["model"])
    for k in sr:
        assert (sr[k] - init[k]).abs().max() > 1e-4 or "norm" in k, k  # the weights did move
        torch.testing.assert_close(sb[k], sr[k], rtol=0, atol=2e-5)
        torch.testing.assert_close(sa[k], sr[k], rtol=0, atol=2e-5)


def test_resume_reproduces_the_next_steps(runs):
    before, after = runs["a1_metrics"], metrics(runs["a"])
    assert [m["step"] for m in before] == [1, 2, 3] and [m["step"] for m in after] == [1, 2, 3, 4]
    assert "resumed from" in runs["a2"].stdout and "at step 3" in runs["a2"].stdout
    assert after[:3] == before  # the steps before the saved state are kept as they were
    assert os.path.isdir(os.path.join(runs["a"], "step_2"))  # --save-every 2: an HF folder at step 2
    assert [m["loss"] for m in after[2:]] == pytest.approx([m["loss"] for m in metrics(runs["b"])[2:]], rel=1e-5)


def test_saved_folder_reloads_with_identical_logits(runs, tmp_path):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder = os.path.join(runs["b"], "final")
    # safetensors files joined from every rank's shards, with their index (checkpoint.save_hf), no shards left
    for name in ("config.json", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"):
        assert os.path.exists(os.path.join(folder, name)), name
    index = json.load(open(os.path.join(folder, "model.safetensors.index.json")))["weight_map"]
    assert all(os.path.exists(os.path.join(folder, f)) for f in set(index.values()))
    assert not os.path.exists(os.path.join(folder, "sharded"))
    assert AutoTokenizer.from_pretrained(folder).chat_template  # the template travels with the model
    # the full HF weights equal the sharded resumable state (written from the same in-memory model)
    dcp_to_torch_save(os.path.join(runs["b"], "state", "step_4"), tmp_path / "state.pt")
    sharded = torch.load(tmp_path / "state.pt", weights_only=False)["model"]
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    for k, v in model.state_dict().items():
        assert torch.equal(v, sharded[k]), k
    # and a second load gives identical logits (tied embeddings restored, not re-initialised)
    x = torch.tensor([[5, 17, 42, 99, 3]])
    again = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert torch.equal(model(x).logits, again(x).logits)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_summary_counts_cut_and_skipped(runs, reference):
    out = runs["a1"].stdout
    assert f"{reference['n']} trajectories (1 skipped: no loss token after truncation)" in out
    assert "2 truncated to 512 tokens, 4 loss turns cut" in out
    config = json.load(open(os.path.join(runs["b"], "config.json")))
    assert config["world_size"] == 2 and config["per_rank_batch"] == 5 and config["total_steps"] == 4
    assert "skipped 1" in runs["rb"].stdout and "tokens saved by trimming" in runs["rb"].stdout


def test_model_folders_name_the_selection_of_their_records(runs, tmp_path):
    """selection.json in every saved HF folder (and "selection" in config.json), for evaluate.py and the report:
    the records' own selection when they all agree (A), "complete" when none names one (B), none for a mix."""
    def named(out, sub):
        path = os.path.join(out, sub, "selection.json")
        return json.load(open(path)) if os.path.exists(path) else None

    # all 10 records, the one skipped for its cut step too; the backbone is the base model folder's name, the
    # envs those of the records' ids (tests.tiny's "tiny_<n>")
    named_by = {"backbone": os.path.basename(runs["model"]), "train_envs": ["tiny"]}
    oracle = {**ORACLE, "n_records": 10, **named_by}
    assert named(runs["a"], "final") == named(runs["a"], "step_2") == oracle
    assert json.load(open(os.path.join(runs["a"], "config.json")))["selection"] == oracle
    complete = {"method": "complete", "ratio": 1.0, "model": None, "n_records": 10, **named_by}
    assert named(runs["b"], "final") == complete
    assert json.load(open(os.path.join(runs["b"], "config.json")))["selection"] == complete
    mixed, out = with_selections(tmp_path / "mixed.jsonl", ORACLE, {"method": "random", "ratio": 0.3}), tmp_path / "m"
    r = launch([PY, "train.py", "--data", mixed, "--model", runs["model"], "--output", str(out)] + FLAGS +
               ["--max-steps", "1"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("the records come from several selections") == 1
    assert os.path.isdir(out / "final") and named(out, "final") is None
    assert json.load(open(out / "config.json"))["selection"] is None


def test_trimming_changes_neither_loss_nor_gradients():
    tok = tiny_tokenizer("llama")
    from tests.tiny import tiny_model
    model = tiny_model("llama", tok).double()  # float64: the two sums differ only by rounding order
    rec = make_records(1, seed=5, min_steps=4, max_steps=4)[0]
    rec["conversations"][-1]["loss"] = False  # loss on the first 3 steps: the last step is a tail
    t = tokenize_record(rec, tok)
    ids, labels = trim_after_last_loss(t)
    assert len(ids) < len(t["input_ids"]) - 20

    def loss_and_grads(ids, labels):
        model.zero_grad()
        logits = model(torch.tensor([ids])).logits[0, :-1]
        loss = F.cross_entropy(logits, torch.tensor(labels[1:]), ignore_index=IGNORE_INDEX, reduction="sum")
        loss.backward()
        return loss.item(), [p.grad.clone() for p in model.parameters()]

    full, trimmed = loss_and_grads(t["input_ids"], t["labels"]), loss_and_grads(ids, labels)
    assert trimmed[0] == pytest.approx(full[0], rel=1e-12)
    for g_full, g_trim in zip(full[1], trimmed[1]):
        torch.testing.assert_close(g_trim, g_full, rtol=1e-9, atol=1e-12)


def test_bad_inputs_fail_with_a_clear_message(inputs, tmp_path):
    _, model, data = inputs
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = launch([PY, "train.py", "--data", str(empty), "--model", model, "--output", str(tmp_path / "o")])
    assert r.returncode != 0 and "empty.jsonl" in r.stderr and "holds no records" in r.stderr, r.stderr[-2000:]
    r = launch([PY, "train.py", "--data", str(data), "--model", str(tmp_path / "nope"),
                "--output", str(tmp_path / "o")])
    assert r.returncode != 0 and "nope" in r.stderr and "no such folder" in r.stderr, r.stderr[-2000:]


def test_step_flops_equal_a_hand_count(runs):
    """The model FLOPs of step 1 (all 9 trainable records, both ranks) against the PaLM count done by hand for the
    tiny Qwen2 config: 2 layers, d 64, 4 heads x 16, 2 kv heads, MLP 128, q/k/v biases, tied embeddings."""
    tok = tiny_tokenizer("qwen")
    d, layers, kv, ff, vocab = 64, 2, 2 * 16, 128, len(tok)
    per_layer = (d * d + d) + 2 * (d * kv + kv) + d * d + 3 * d * ff + 2 * d  # q, k, v (+bias), o, MLP, 2 norms
    n_body = layers * per_layer + d  # + the final norm; the tied embedding/LM head is counted apart
    flops = 0
    for rec in data_records():
        ids, labels = trim_after_last_loss(tokenize_record(rec, tok, MAXLEN))
        T, n_loss = len(ids) - 1, sum(l != IGNORE_INDEX for l in labels[1:])
        if n_loss:  # 6 N per token + 12 L d T per token for attention + the LM head at the loss positions only
            flops += 6 * n_body * T + 12 * layers * d * T * T + 6 * d * vocab * n_loss
    for out in ("a", "b"):
        assert [m["flops"] for m in metrics(runs[out])] == [flops] * 4
    b = metrics(runs["b"])[0]
    dt = b["tokens"] / b["tokens_per_s"]
    assert b["tflops_per_device"] == pytest.approx(flops / dt / 2 / 1e12, rel=1e-6) and b["mfu"] is None  # no peak
    a = metrics(runs["a"])[0]  # --peak-tflops 0.5
    assert a["mfu"] == pytest.approx(a["tflops_per_device"] / 0.5, rel=1e-9)
    assert "MFU " in runs["a1"].stdout and "TFLOP/s/dev" in runs["rb"].stdout
    assert "memory per rank (estimate): parameters" in runs["rb"].stdout


def refused(r):
    """A refusal: exit code 1, one line on stderr naming the problem, no traceback."""
    lines = [l for l in r.stderr.splitlines() if l.startswith("train.py: ")]
    assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    return lines[0]


def test_a_run_is_never_overwritten_or_resumed_with_other_settings(runs, tmp_path):
    b = runs["b"]
    before = open(os.path.join(b, "metrics.jsonl")).read(), open(os.path.join(b, "config.json")).read()
    common = ["train.py", "--model", runs["model"], "--output", b] + FLAGS
    line = refused(launch([PY] + common + ["--data", str(runs["data"])]))  # a rerun without --resume
    assert "holds a run" in line and "--resume" in line and "--overwrite" in line
    changed = tmp_path / "changed.jsonl"  # the same file with one word changed: same size, other content
    changed.write_text(open(runs["data"]).read().replace("Your task:", "Your TASK:", 1))
    flags = [f if f != "4" else "5" for f in FLAGS]  # --epochs 4 -> 5
    flags[flags.index("--lr") + 1] = "0.002"
    line = refused(launch([PY] + common[:-len(FLAGS)] + flags + ["--data", str(changed), "--resume"]))
    assert "--resume refused" in line and "data_sha256" in line and "epochs: 4 before, 5 now" in line
    assert "lr: 0.001 before, 0.002 now" in line and "batch_size" not in line
    assert (open(os.path.join(b, "metrics.jsonl")).read(), open(os.path.join(b, "config.json")).read()) == before

    # a second writer: the test holds the folder's lock as a live run would; the refusal names it. The launch
    # also runs --dtype auto on a CPU that claims native bf16 (devices.cpu_has_native_bf16 patched at start-up).
    from runs import lock_output
    patch = tmp_path / "patch"
    patch.mkdir()
    (patch / "sitecustomize.py").write_text("import devices\ndevices.cpu_has_native_bf16 = lambda: True\n")
    held = lock_output(b)
    try:
        r = launch([PY] + common + ["--data", str(runs["data"]), "--resume", "--dtype", "auto"],
                   {"PYTHONPATH": f"{patch}{os.pathsep}{ROOT}"})
    finally:
        held.close()
    line = refused(r)
    assert "another run is writing" in line and f"pid {os.getpid()}" in line
    assert "compute dtype bfloat16 (auto: the CPU has native bf16 matmul" in r.stdout


def children(pid):
    """pids of the live processes whose parent is pid (from /proc)."""
    out = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(p))
        except (OSError, IndexError):
            pass
    return out


def alive(pid):
    """True while pid runs (a zombie, dead but not yet reaped by its new parent, does not count)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_run_killed_with_its_process_tree_resumes_from_its_last_automatic_save(runs, tmp_path):
    """B again, SIGKILL to torchrun's process group once the first automatic save (each epoch's end; an epoch is
    one step here) is on disk. torchrun's workers run in sessions of their own, out of reach of that kill: they
    must notice the dead launcher and leave by themselves, then --resume continues to B's very losses."""
    import signal
    import time
    out = str(tmp_path / "k")
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node", "2", "train.py", "--data", str(runs["data"]), "--model",
           runs["model"], "--output", out, "--activation-checkpointing"] + FLAGS
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    # nice 19: on a loaded 2-core machine the workers could otherwise run several steps (each one saved) between
    # the first save and the kill, and finish the run's last save before it lands (seen in CI: saved step 4 of 4)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=lambda: os.nice(19))
    latest, deadline, workers = os.path.join(out, "state", "latest"), time.time() + 240, []
    while not os.path.exists(latest) and proc.poll() is None and time.time() < deadline:
        if len(workers) < 2:  # found before the first save, so nothing stands between it and the kill
            workers = children(proc.pid)
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(out, "final")), "the run finished before the kill; nothing tested"
    assert len(workers) == 2
    deadline = time.time() + 30
    while any(alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.01)
    assert time.time() < deadline, "the workers outlived their launcher"
    # they died with it (PR_SET_PDEATHSIG), not steps later: no save after the kill (CI once saw step 4 of 4 saved)
    assert not os.path.exists(os.path.join(out, "final")), "the workers trained on after the kill"
    saved = json.load(open(latest))["step"]
    assert 1 <= saved < STEPS
    r = launch(cmd + ["--resume"])
    assert r.returncode == 0 and f"at step {saved}" in r.stdout, r.stderr[-3000:]
    resumed, uninterrupted = metrics(out), metrics(runs["b"])
    assert [m["step"] for m in resumed] == [1, 2, 3, 4]
    assert [m["loss"] for m in resumed] == [m["loss"] for m in uninterrupted]
    assert [m["grad_norm"] for m in resumed] == [m["grad_norm"] for m in uninterrupted]


def test_gpu_bench_smoke_path():
    """bench/bench_gpu.py's CPU path: the same code as on a GPU (train.py with activation checkpointing off and on,
    HF Trainer on the same sequences, perplexity.py), tiny config, 2 steps. Both trainers see the same batch, so
    their step-1 losses agree; the last line holds the ratios run_all.py reads."""
    r = launch([PY, "bench/bench_gpu.py", "--smoke"])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    ratios = json.loads(r.stdout.strip().splitlines()[-1])["ratios"]
    for k in ("train.py / HF Trainer tok/s, AC off", "train.py / HF Trainer tok/s, AC on", "train.py MFU, AC off",
              "train.py AC on / AC off tok/s"):
        assert math.isfinite(ratios[k]) and ratios[k] > 0, k
    assert ratios["|step-1 loss train.py - HF| (AC off)"] < 1e-4
    assert "perplexity.py (forward, scoring)" in r.stdout and "HF Trainer, AC on" in r.stdout


@pytest.mark.parametrize("rank1_sees,message", [
    ("records[:-1]", "the ranks read different data (rank 0: 10 records"),      # the file grew between the reads
    ("raise", "line 7: not a JSON record, and a kill can only cut the last line (seen by rank 1)"),  # a partial line
])
def test_ranks_agree_on_their_data_before_any_step(inputs, tmp_path, rank1_sees, message):
    """Two ranks that read the data file at different moments (it was still being written): one line, printed
    once whichever rank saw the problem, every rank exits, no step is trained and no output folder is made.
    Rank 1's view is forced by a sitecustomize that replaces trajectory.read_records on rank 1 only."""
    patch = tmp_path / "patch"
    patch.mkdir()
    body = ("records = real(path, *a, **k)\n        return records[:-1]" if rank1_sees == "records[:-1]" else
            "raise trajectory.RecordError(f'{path}: line 7: not a JSON record, and a kill can only cut the last line')")
    (patch / "sitecustomize.py").write_text(
        "import os, trajectory\n"
        "if os.environ.get('RANK') == '1':\n"
        "    real = trajectory.read_records\n"
        "    def read(path, *a, **k):\n"
        f"        {body}\n"
        "    trajectory.read_records = read\n")
    _, model, data = inputs
    out = tmp_path / "out"
    r = launch([TORCHRUN, "--standalone", "--nproc_per_node", "2", "train.py", "--data", str(data),
                "--model", model, "--output", str(out)] + FLAGS,
               {"PYTHONPATH": f"{patch}{os.pathsep}{ROOT}"})
    lines = [l for l in (r.stdout + r.stderr).splitlines() if l.startswith("train.py: ")]
    assert r.returncode != 0 and len(lines) == 1 and message in lines[0], r.stderr[-3000:]
    assert "Traceback" not in r.stderr.split("train.py: ")[0] and not out.exists()
    assert "step 1/" not in r.stdout


def test_a_full_disk_during_the_final_save_then_a_rerun_completes(inputs, tmp_path):
    """The final save runs out of space (ENOSPC, forced by a sitecustomize that fails the config's save into the
    final folder, after the weights): one line, no traceback, no final/ at all (never half of one), the state of
    the last step kept.
    The rerun with --resume trains nothing again and saves a final/ that loads."""
    _, model, data = inputs
    patch = tmp_path / "patch"
    patch.mkdir()
    (patch / "sitecustomize.py").write_text(
        "import errno, os\n"
        "from transformers import PretrainedConfig\n"
        "real = PretrainedConfig.save_pretrained\n"
        "def full(self, path, *a, **k):\n"
        "    if str(path).endswith('final.partial'):\n"
        "        os.makedirs(path, exist_ok=True)\n"
        "        open(os.path.join(path, 'config.json'), 'w').write('{}')  # what a half-written save leaves\n"
        "        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
        "    return real(self, path, *a, **k)\n"
        "PretrainedConfig.save_pretrained = full\n")
    out = tmp_path / "out"
    cmd = [PY, "train.py", "--data", str(data), "--model", model, "--output", str(out)] + FLAGS
    line = refused(launch(cmd, {"PYTHONPATH": f"{patch}{os.pathsep}{ROOT}"}))
    assert "cannot save" in line and "No space left on device" in line and "--resume" in line
    assert not (out / "final").exists() and not (out / "final.partial").exists()
    assert json.loads((out / "state" / "latest").read_text())["step"] == STEPS
    steps_before = metrics(out)
    again = launch(cmd + ["--resume"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from {out / 'state' / f'step_{STEPS}'} at step {STEPS}" in again.stdout
    assert metrics(out) == steps_before  # nothing trained twice
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(str(out / "final"))
    assert json.loads((out / "final" / "selection.json").read_text())["method"] == "complete"


def test_ctrl_c_is_one_line_and_the_rerun_resumes(inputs, tmp_path):
    """SIGINT to a training run after its first saved state: exit 130, one line saying how to continue, no
    traceback; the rerun with --resume finishes every step."""
    _, model, data = inputs
    out = tmp_path / "out"
    cmd = [PY, "train.py", "--data", str(data), "--model", model, "--output", str(out)] + FLAGS + ["--epochs", "30"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    rc, err = interrupt_when(cmd, (out / "state" / "latest").exists, env)
    lines = [l for l in err.splitlines() if l.startswith("train.py: ")]
    assert rc == 130 and len(lines) == 1 and "interrupted (SIGINT)" in lines[0], err[-2000:]
    assert "--resume" in lines[0] and "Traceback" not in err
    again = launch(cmd + ["--resume"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert [m["step"] for m in metrics(out)] == list(range(1, 31))  # one step per epoch


def test_cpu_offload_and_the_gathered_save_change_nothing_trained(runs, tmp_path):
    """--cpu-offload hands FSDP2 its CPUOffloadPolicy (the log names the policy FSDP holds) and trains the same
    steps; --save-gathered writes the same weights as the default sharded save (every rank's shards joined by
    rank 0), as one model.safetensors."""
    from transformers import AutoModelForCausalLM
    out = tmp_path / "offload"
    r = launch([TORCHRUN, "--standalone", "--nproc_per_node", "2", "train.py", "--data", str(runs["data"]),
                "--model", runs["model"], "--output", str(out)] + FLAGS + ["--cpu-offload", "--save-gathered"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "(held in host memory: CPUOffloadPolicy)" in r.stdout
    assert "(offload: none, OffloadPolicy)" in runs["rb"].stdout
    want = metrics(runs["b"])
    assert [m["loss"] for m in metrics(out)] == pytest.approx([m["loss"] for m in want], rel=1e-5)
    assert os.path.exists(out / "final" / "model.safetensors")  # save_pretrained's single file
    got = AutoModelForCausalLM.from_pretrained(out / "final", dtype=torch.float32).state_dict()
    ref = AutoModelForCausalLM.from_pretrained(os.path.join(runs["b"], "final"), dtype=torch.float32).state_dict()
    assert got.keys() == ref.keys()
    assert all(torch.allclose(got[k], ref[k], rtol=1e-5, atol=1e-7) for k in ref)


def test_a_refusal_on_two_ranks_is_rank_0s_line_not_a_kill(runs, tmp_path):
    """Every rank refuses the same data; the others wait for rank 0's line before they leave, so torchrun does not
    stop rank 0 first (which printed "interrupted (SIGTERM)" instead of the reason)."""
    r = launch([TORCHRUN, "--standalone", "--nproc_per_node", "2", "train.py", "--data", str(runs["data"]),
                "--model", runs["model"], "--output", str(tmp_path / "o"), "--batch-size", "10", "--max-length", "8"])
    assert r.returncode != 0
    assert r.stderr.count("train.py: nothing to train: ") == 1 and "interrupted" not in r.stderr, r.stderr[-3000:]
    assert not (tmp_path / "o").exists()
