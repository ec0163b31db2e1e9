"""
train.py on one GPU (bf16, FSDP2) against Hugging Face Trainer on the same model, data and loss mask, with
activation checkpointing on and off, plus perplexity.py's scoring speed. Prints one table of tokens/s, MFU and
ratios; under 10 minutes on one H100.

    python bench/bench_gpu.py                # CUDA: a randomly initialised Llama-3.2-1B-shaped model (1.24B
                                             # parameters), 8 trajectories of ~8192 tokens per optimizer step
    python bench/bench_gpu.py --smoke        # CPU: tiny config, 2 steps, gloo, fp32 (the test runs this)

The model is built from a config (no download): Llama-3 architecture (GQA, SwiGLU, RoPE theta 5e5, 128256-token
vocabulary, tied embeddings as in Llama-3.2-1B). The tokenizer is the tiny Llama-3-template tokenizer of the tests
(ids < 1024 of the 128256 rows; the cost of the model does not depend on which ids it sees). Records are synthetic
AgentGym trajectories with ATLaS-style selection: the last step that fits in --max-length plus a random 30% of the
others keep loss true. Both trainers get the same sequences (cut at --max-length and trimmed after the last loss
token, as train.py does), one trajectory per micro-batch, all --records trajectories in every optimizer step, so
both do the same work per step; their step-1 losses must agree. Throughput is over steps 2..N (step 1 pays
start-up and allocator warm-up). MFU = model FLOPs (flops.train_flops, which train.py counts with: 6 N T +
12 L d T^2 + the LM head at the loss positions) / time / the GPU's bf16 dense peak, the same FLOP count for both
trainers (the work the step needs; HF also computes the LM head at every position, which is not counted as useful).
"""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import flops  # noqa: E402
from tests.tiny import make_records, tiny_config, tiny_tokenizer  # noqa: E402
from trajectory import step_indices, tokenize_record, trim_after_last_loss, with_selection  # noqa: E402

parser = argparse.ArgumentParser(description="train.py vs HF Trainer on one GPU: tokens/s, MFU, ratios")
parser.add_argument("--smoke", action="store_true", help="CPU smoke path: tiny config, 2 steps, fp32")
parser.add_argument("--records", type=int, default=8, help="trajectories = global batch (one step = all)")
parser.add_argument("--steps", type=int, default=6, help="optimizer steps of each run")
parser.add_argument("--max-length", type=int, default=8192, help="tokens per trajectory (paper: 8192)")
parser.add_argument("--keep", default=None, help="keep the work folder here (default: a temporary one)")
args = parser.parse_args()
if args.smoke:
    args.records, args.steps, args.max_length = 2, 2, 512

import torch  # noqa: E402

cuda = torch.cuda.is_available() and not args.smoke
if not cuda and not args.smoke:
    sys.exit("bench_gpu.py: no CUDA device; run it on a GPU machine, or pass --smoke for the CPU path")
work = args.keep or tempfile.mkdtemp(prefix="bench_gpu_")
os.makedirs(work, exist_ok=True)
env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
if not cuda:
    env["OMP_NUM_THREADS"] = "1"

# ----------------------------------------------------------------------------- model (from a config) and data
from transformers import AutoModelForCausalLM, LlamaConfig  # noqa: E402

tok = tiny_tokenizer("llama")
if cuda:
    config = LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                         rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
else:
    config = tiny_config("llama", tok)
model_dir = os.path.join(work, "model")
torch.manual_seed(0)
with torch.device("cuda" if cuda else "cpu"):
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if cuda else torch.float32)
n_params = sum(p.numel() for p in model.parameters())
model.save_pretrained(model_dir)
tok.save_pretrained(model_dir)
del model
if cuda:
    torch.cuda.empty_cache()  # the train.py and perplexity.py processes need the whole GPU

rng = random.Random(0)
words, steps = ((30, 60), 60) if cuda else ((5, 15), 8)
records = []
for rec in make_records(args.records, seed=1, min_steps=steps, max_steps=steps, words=words):
    fits = sorted(tokenize_record(rec, tok, args.max_length)["spans"])  # the steps that fit in max_length
    rest = [s for s in step_indices(rec) if s in fits[:-1]]
    records.append(with_selection(rec, [fits[-1]] + rng.sample(rest, int(0.3 * len(rest))), {"method": "bench"}))
data_path = os.path.join(work, "data.jsonl")
with open(data_path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)
seqs = [trim_after_last_loss(tokenize_record(r, tok, args.max_length)) for r in records]
step_tokens = sum(len(ids) - 1 for ids, _ in seqs)  # the positions both trainers compute (inputs ids[:-1])
print(f"model {n_params / 1e9:.3f}B parameters ({'bf16 on ' + torch.cuda.get_device_name(0) if cuda else 'fp32, CPU'})"
      f" | {len(records)} trajectories per step, {min(len(s) for s, _ in seqs)}..{max(len(s) for s, _ in seqs)} "
      f"tokens each, {step_tokens} per step | {args.steps} steps", flush=True)


# ----------------------------------------------------------------------------- train.py
def run_train(checkpointing):
    out = os.path.join(work, f"train_ac{int(checkpointing)}")
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--data", data_path, "--model", model_dir, "--output", out,
           "--overwrite", "--batch-size", str(args.records), "--micro-batch-size", "1", "--micro-batch-tokens",
           str(args.max_length), "--epochs", str(args.steps), "--max-length", str(args.max_length), "--lr", "2e-5",
           "--warmup-ratio", "0", "--dtype", "bfloat16" if cuda else "float32", "--save-minutes", "0"]
    cmd += ["--activation-checkpointing"] if checkpointing else []
    cmd += [] if cuda else ["--peak-tflops", str(peak)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"train.py failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    rows = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    dt = rows[-1]["time"] - rows[0]["time"]
    return {"tok_s": sum(r["tokens"] for r in rows[1:]) / dt, "flops": sum(r["flops"] for r in rows[1:]), "dt": dt,
            "flops_per_step": rows[-1]["flops"], "loss1": rows[0]["loss"]}


# ----------------------------------------------------------------------------- HF Trainer on the same sequences
def run_hf(checkpointing):
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(seqs)

        def __getitem__(self, i):
            return {"input_ids": seqs[i][0], "labels": seqs[i][1]}

    def collate(rows):  # one trajectory per micro-batch: no padding
        return {k: torch.tensor([r[k] for r in rows]) for k in ("input_ids", "labels")}

    class Clock(TrainerCallback):
        times, losses = [], []

        def on_step_end(self, a, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            self.times.append(time.time())

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.losses.append(logs["loss"])

    targs = TrainingArguments(output_dir=os.path.join(work, "hf"), per_device_train_batch_size=1,
                              gradient_accumulation_steps=args.records, learning_rate=2e-5, weight_decay=0.0,
                              lr_scheduler_type="constant", max_steps=args.steps, max_grad_norm=1.0,
                              logging_steps=1, save_strategy="no", report_to=[], use_cpu=not cuda, bf16=cuda,
                              gradient_checkpointing=checkpointing, dataloader_num_workers=0, seed=0,
                              disable_tqdm=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    Clock.times, Clock.losses = [], []
    Trainer(model=model, args=targs, train_dataset=Rows(), data_collator=collate, callbacks=[Clock()]).train()
    dt = Clock.times[-1] - Clock.times[0]
    del model
    if cuda:
        torch.cuda.empty_cache()
    return {"tok_s": (args.steps - 1) * step_tokens / dt, "dt": dt, "loss1": Clock.losses[0]}


# ----------------------------------------------------------------------------- perplexity.py (forward only)
def run_perplexity():
    out = os.path.join(work, "ppl.jsonl")
    for p in (out, out + ".config.json"):
        if os.path.exists(p):
            os.remove(p)
    cmd = [sys.executable, os.path.join(ROOT, "perplexity.py"), "--input", data_path, "--output", out, "--model",
           model_dir, "--max-length", str(args.max_length), "--batch-tokens", str(2 * args.max_length)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    found = re.findall(r"([\d.]+) tokens/s", r.stdout + r.stderr)
    if r.returncode or not found:
        sys.exit(f"perplexity.py failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return float(found[-1])


# the peak MFU is measured against: flops.py's table for the GPU in bf16 (train.py's own default); on the CPU path a
# nominal 1 TFLOP/s, so that the MFU arithmetic runs too
peak = flops.peak_tflops(torch.cuda.get_device_name(0), torch.bfloat16) if cuda else 1.0
t0 = time.time()
ours = {ac: run_train(ac) for ac in (False, True)}
hf = {ac: run_hf(ac) for ac in (False, True)}
ppl = run_perplexity()
rows, ratios = [], {}
for ac in (False, True):
    name = f"AC {'on' if ac else 'off'}"
    ours_tflops, ours_mfu = flops.mfu(ours[ac]["flops"], ours[ac]["dt"], 1, peak)
    hf_tflops, hf_mfu = flops.mfu(ours[ac]["flops_per_step"] * (args.steps - 1), hf[ac]["dt"], 1, peak)  # same work
    rows += [(f"train.py, {name}", ours[ac]["tok_s"], ours_tflops, ours_mfu),
             (f"HF Trainer, {name}", hf[ac]["tok_s"], hf_tflops, hf_mfu)]
    ratios[f"train.py / HF Trainer tok/s, {name}"] = ours[ac]["tok_s"] / hf[ac]["tok_s"]
    ratios[f"train.py MFU, {name}"] = ours_mfu if ours_mfu is not None else float("nan")
ratios["train.py AC on / AC off tok/s"] = ours[True]["tok_s"] / ours[False]["tok_s"]
ratios["|step-1 loss train.py - HF| (AC off)"] = abs(ours[False]["loss1"] - hf[False]["loss1"])
rows.append(("perplexity.py (forward, scoring)", ppl, None, None))

print(f"\n{'run':34} {'tokens/s':>10} {'TFLOP/s':>9} {'MFU':>7}")
for name, tok_s, tflops, m in rows:
    print(f"{name:34} {tok_s:10.0f} {'' if tflops is None else f'{tflops:9.1f}':>9} "
          f"{'' if m is None else f'{m:.1%}':>7}")
print(f"\n{'ratio':44} {'value':>8}")
for k, v in ratios.items():
    print(f"{k:44} {v:8.3f}")
print(f"peak {peak} TFLOP/s per device; step-1 loss train.py {ours[False]['loss1']:.5f}, HF {hf[False]['loss1']:.5f}; "
      f"bench {time.time() - t0:.0f}s")
print(json.dumps({"ratios": ratios, "goals": {"train.py / HF Trainer tok/s, AC off": ">= 1.3",
                                              "train.py / HF Trainer tok/s, AC on": ">= 1.3",
                                              "train.py MFU, AC off": ">= 0.45", "train.py MFU, AC on": ">= 0.45"}}))
if not args.keep:
    shutil.rmtree(work, ignore_errors=True)
