"""train.py's guards and arithmetic, without training: bad options and inputs are refused in one line before any
model loads and leave no output folder; --dtype auto follows the hardware; the FLOP, MFU and memory functions
against hand counts.
    pytest -q tests/test_train_guard.py

The counting functions are flops.py's, the module train.py itself calls.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import devices
from tests.tiny import make_records, save_tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def train_functions():
    """train_flops, peak_tflops, mfu, memory_estimate and PEAK_BF16_TFLOPS: flops.py, the module train.py counts
    with."""
    import flops
    return {name: getattr(flops, name) for name in
            ("train_flops", "peak_tflops", "mfu", "memory_estimate", "PEAK_BF16_TFLOPS")}


def test_flops_mfu_and_memory_against_hand_counts():
    f = train_functions()
    # a 2-layer model, d 8, 2 heads x 4, body 1000 weights, vocab 50: one sequence of 10 tokens, 3 loss tokens
    # 6 * 1000 * 10 = 60000 (weights) + 12 * 2 * 8 * 10 * 10 = 19200 (attention) + 6 * 8 * 50 * 3 = 7200 (head)
    assert f["train_flops"](10, 3, n_body=1000, n_layer=2, attn_dim=8, d_model=8, vocab=50) == 86400
    # attention grows with the square of the length: twice the tokens, 4x its term
    assert f["train_flops"](20, 0, n_body=0, n_layer=2, attn_dim=8, d_model=8, vocab=50) == 4 * 19200
    # Llama-3.1-8B (32 layers, d 4096, 128256 vocab, 6.98e9 body weights) on one 8192-token sequence, all loss
    # tokens: ~6 N T + 12 L d T^2 = 3.43e14 + 1.06e14 + the head 6 d V T = 2.58e13
    fl = f["train_flops"](8192, 8192, n_body=6.98e9, n_layer=32, attn_dim=4096, d_model=4096, vocab=128256)
    assert fl == pytest.approx(6 * 6.98e9 * 8192 + 12 * 32 * 4096 * 8192 ** 2 + 6 * 4096 * 128256 * 8192)
    tflops, m = f["mfu"](989e12 * 8 * 2.0, 2.0, 8, 989.0)  # 8 H100s at exactly their peak for 2 s
    assert tflops == pytest.approx(989.0) and m == pytest.approx(1.0)
    assert f["mfu"](1e12, 1.0, 1, None) == (1.0, None)
    peak = f["peak_tflops"]
    assert peak("NVIDIA H100 80GB HBM3", torch.bfloat16) == 989.0
    assert peak("NVIDIA H100 PCIe", torch.bfloat16) == 756.0 and peak("NVIDIA H100 NVL", torch.bfloat16) == 835.0
    assert peak("NVIDIA A100-SXM4-80GB", torch.bfloat16) == 312.0
    assert peak("NVIDIA H200", torch.bfloat16) == 989.0
    assert peak("NVIDIA H100 80GB HBM3", torch.float32) is None  # the table is bf16 dense: no guess for fp32
    assert peak(None, torch.bfloat16) is None and peak(None, torch.float32, given=2.5) == 2.5  # CPU: only if given
    assert peak("Tesla T4", torch.bfloat16) is None
    # memory: 1e9 parameters on 8 ranks -> 0.5 GB weights, 0.5 GB grads, 1 GB AdamW per rank
    mem = f["memory_estimate"](1e9, 8, 2, n_layer=2, d_model=10, d_kv=4, d_ff=20, vocab=100, tokens=1000,
                               loss_tokens=10, checkpointing=False)
    block = (10 * 10 + 3 * 4 + 4 * 20) * 2  # 384 bytes per token per block
    assert (mem["params"], mem["grads"], mem["adamw"]) == (5e8, 5e8, 1e9)
    assert mem["activations"] == 1000 * 2 * block + 10 * 100 * (2 + 8)
    mem = f["memory_estimate"](1e9, 8, 2, n_layer=2, d_model=10, d_kv=4, d_ff=20, vocab=100, tokens=1000,
                               loss_tokens=10, checkpointing=True)
    assert mem["activations"] == 1000 * (2 * 10 * 2 + block) + 10 * 100 * (2 + 8)


def test_dtype_auto_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    dtype, why = devices.resolve_dtype("auto", "cpu")
    assert dtype == torch.bfloat16 and "native bf16" in why
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    dtype, why = devices.resolve_dtype("auto", "cpu")
    assert dtype == torch.float32 and "no native bf16" in why
    assert devices.resolve_dtype("bfloat16", "cpu")[0] == torch.bfloat16  # asked for: whatever the CPU
    assert devices.resolve_dtype("float32", "cuda")[0] == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert devices.resolve_dtype("auto", "cuda")[0] == torch.bfloat16


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("guard")
    model = save_tiny(tmp / "qwen", "qwen")
    data = tmp / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_records(4, seed=3)))
    (tmp / "empty_model").mkdir()
    no_weights = tmp / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(open(os.path.join(model, "config.json")).read())
    plain = tmp / "no_template"  # a base model folder: weights and tokenizer, no chat template
    shutil.copytree(model, plain)
    for name in os.listdir(plain):
        if name.startswith("chat_template"):
            os.remove(plain / name)
    cfg = json.load(open(plain / "tokenizer_config.json"))
    cfg.pop("chat_template", None)
    json.dump(cfg, open(plain / "tokenizer_config.json", "w"))
    rewrites = tmp / "rewrites"  # a template that does not copy the content: no step can be located
    shutil.copytree(plain, rewrites)
    cfg["chat_template"] = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | upper }}"
                            "<|im_end|>\n{% endfor %}")
    json.dump(cfg, open(rewrites / "tokenizer_config.json", "w"))
    rec = make_records(1, seed=4)[0]
    bad = tmp / "bad.jsonl"
    bad.write_text(json.dumps(make_records(1, seed=5)[0]) + "\n" + json.dumps({**rec, "steps": 3}) + "\n")
    return tmp, model, data


CASES = [  # (extra flags, environment, what the one line must say)
    (["--batch-size", "0"], {}, "--batch-size 0 must be positive"),
    (["--batch-size", "-2"], {}, "--batch-size -2 must be positive"),
    (["--batch-size", "3"], {"WORLD_SIZE": "2", "RANK": "0"}, "--batch-size 3 must divide by the world size 2"),
    (["--epochs", "0", "--max-length", "0"], {}, "--epochs 0 must be positive; --max-length 0 must be positive"),
    (["--lr", "0"], {}, "--lr 0.0 must be positive"),
    (["--lr", "nan"], {}, "--lr nan"),
    (["--micro-batch-size", "0"], {}, "--micro-batch-size 0 must be positive"),
    (["--warmup-ratio", "1.5"], {}, "--warmup-ratio 1.5 is out of range"),
    (["--resume", "--overwrite"], {}, "exclude each other"),
    (["--model", "{tmp}/nope"], {}, "nope: no such folder"),
    (["--model", "{tmp}/empty_model"], {}, "empty_model: not a model folder (no config.json)"),
    (["--model", "{tmp}/no_weights"], {}, "no_weights: no weights"),
    (["--model", "{tmp}/no_template"], {}, "no_template: the tokenizer has no chat template"),
    (["--model", "{tmp}/rewrites"], {}, "data.jsonl: item_id 'tiny_0': item_id 'tiny_0': the chat template changed"),
    (["--data", "{tmp}/bad.jsonl"], {}, "bad.jsonl: line 2 (item_id 'tiny_0')"),
    (["--data", "{tmp}"], {}, "bad data"),
    (["--data", "{tmp}/missing.jsonl"], {}, "missing.jsonl: no such file"),
]


@pytest.mark.parametrize("flags,env,says", CASES, ids=[c[2][:30] for c in CASES])
def test_bad_options_and_inputs_give_one_line_and_no_folder(folders, flags, env, says):
    tmp, model, data = folders
    out = tmp / "out"
    cmd = [PY, "train.py", "--data", str(data), "--model", model, "--output", str(out)]
    cmd += [f.format(tmp=tmp) for f in flags]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("train.py: "), r.stderr[-3000:]
    assert says in lines[0], lines[0]
    assert not out.exists()  # refused before anything was written


def test_selection_named_in_the_model_folders():
    import checkpoint
    recs = make_records(3, seed=4)
    assert checkpoint.selection_of(recs, "/models/Llama-3.1-8B-Instruct/") == {
        "method": "complete", "ratio": 1.0, "model": None, "n_records": 3, "backbone": "Llama-3.1-8B-Instruct",
        "train_envs": ["tiny"]}
    oracle = [{**r, "selection": {"method": "oracle", "ratio": 0.3, "model": "gpt-4o", "plan": str(i)}}
              for i, r in enumerate(recs)]
    assert checkpoint.selection_of(oracle) == {"method": "oracle", "ratio": 0.3, "model": "gpt-4o", "n_records": 3,
                                               "backbone": None, "train_envs": ["tiny"]}
    # the envs of AgentTraj-L's ids, prefixes read: one env is a single-task model (Tables 4 and 5)
    ids = ["lmrlgym_maze_12", "maze_3", "tool_weather_5"]
    named = [{**r, "item_id": i} for r, i in zip(oracle, ids)]
    assert checkpoint.selection_of(named)["train_envs"] == ["maze", "weather"]
    assert checkpoint.selection_of(named[:2])["train_envs"] == ["maze"]
    mixed = oracle[:2] + [{**recs[2], "selection": {"method": "random", "ratio": 0.3}}]
    assert checkpoint.selection_of(mixed) is None
    other_model = oracle[:2] + [{**oracle[2], "selection": {"method": "oracle", "ratio": 0.3, "model": "llama"}}]
    assert checkpoint.selection_of(other_model) is None  # two selector models are two rows (Table 5)


def test_nothing_to_train_is_its_own_exit_code(folders):
    """Records that keep no loss token within --max-length: one line and exit code 3 (train.NOTHING_TO_TRAIN),
    which the driver reads as a row that cannot be trained (a loud skip), not as a failure; no folder is made."""
    tmp, model, data = folders
    out = tmp / "out_nothing"
    r = subprocess.run([PY, "train.py", "--data", str(data), "--model", model, "--output", str(out),
                        "--max-length", "4"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [l for l in r.stderr.splitlines() if l.strip() and "tokenize" not in l]
    assert r.returncode == 3, r.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("train.py: nothing to train: "), lines
    assert not out.exists()
