"""train.py against a plain PyTorch reference on a tiny Qwen2 (tied embeddings), on the CPU.
    pytest -q tests/test_train.py

Five launches of train.py in all (each costs seconds of start-up), shared by the tests below:
  A1  python train.py ... --save-every 2 --stop-after 3      a job that dies after step 3 (last state: step 2)
  A2  python train.py ... --resume                           continues it: steps 3 and 4 again, then saves
  B   torchrun --nproc_per_node 2 train.py ... --activation-checkpointing   the same run on 2 ranks (gloo)
  and two bad-data launches (missing model folder, empty data file).
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

from tests.tiny import make_records, save_tiny, tiny_tokenizer
from trajectory import IGNORE_INDEX, tokenize_record, trim_after_last_loss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
TORCHRUN = os.path.join(os.path.dirname(PY), "torchrun")
LR, STEPS, WARMUP, MAXLEN = 1e-3, 4, 1, 512
FLAGS = ["--epochs", "4", "--batch-size", "10", "--micro-batch-size", "2", "--lr", str(LR), "--warmup-ratio",
         "0.25", "--max-length", str(MAXLEN), "--seed", "1"]


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


@pytest.fixture(scope="module")
def runs(inputs):
    tmp, model, data = inputs
    a, b = str(tmp / "a"), str(tmp / "b")
    common = ["train.py", "--data", str(data), "--model", model] + FLAGS
    a1 = launch([PY] + common + ["--output", a, "--save-every", "2", "--stop-after", "3"])
    assert a1.returncode == 0, a1.stderr[-3000:]
    a1_metrics = metrics(a)
    a2 = launch([PY] + common + ["--output", a, "--save-every", "2", "--resume"])
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
    assert "resumed from" in runs["a2"].stdout and "at step 2" in runs["a2"].stdout
    assert after[2]["loss"] == pytest.approx(before[2]["loss"], rel=1e-6)  # step 3 redone from the step-2 state
    assert [m["loss"] for m in after[2:]] == pytest.approx([m["loss"] for m in metrics(runs["b"])[2:]], rel=1e-5)


def test_saved_folder_reloads_with_identical_logits(runs, tmp_path):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder = os.path.join(runs["b"], "final")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert os.path.exists(os.path.join(folder, name)), name
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
    assert r.returncode != 0 and "nope" in r.stderr and "not a model folder" in r.stderr, r.stderr[-2000:]
