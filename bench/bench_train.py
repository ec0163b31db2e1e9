"""
train.py against a Hugging Face Trainer run: same model, same records, same loss mask, same optimizer settings.

    python bench/bench_train.py                                   # ~30M Llama config + SmolLM2 tokenizer, CPU
    python bench/bench_train.py --model cache/smollm2/hf          # the real SmolLM2-135M-Instruct (slower)

The tokenizer (and chat template) is SmolLM2-135M-Instruct's, from `python scripts/get_smollm2.py`; without it
the tiny Llama-3 tokenizer of the tests is used. Records are synthetic AgentGym trajectories with ATLaS-style
selection (a random 30% of the steps keep loss true). Every optimizer step takes the whole set (--records equals
--batch-size), so both runs see the same global batch at every step whatever their data order, and their
step-1 losses must agree. Throughput counts the same trajectory tokens for both (the full rendered trajectory,
even where train.py trims the tail), over steps 2..N (step 1 pays the start-up). Prints one line of ratios.
Both runs are single-process on this machine; train.py's own speed-ups are here: the tail after the last
critical step is not computed, LM-head logits only at loss positions, length-sorted micro-batches.
train.py runs twice, --dtype float32 (the run compared with the Trainer, also fp32) and --dtype bfloat16, and a
second line gives the bf16 / fp32 tokens/s ratio on this CPU with its bf16 flags: bf16 compute pays only on a CPU
with native bf16 matmul (avx512_bf16 / amx_bf16); an AVX2-only CPU emulates it.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import flops  # noqa: E402
from tests.tiny import make_records, tiny_tokenizer  # noqa: E402
from trajectory import step_indices, tokenize_record, with_selection  # noqa: E402

parser = argparse.ArgumentParser(description="train.py vs HF Trainer: tokens/s ratio and step-1 loss")
parser.add_argument("--model", default=None, help="HF folder to train (default: a ~30M-parameter Llama config)")
parser.add_argument("--tokenizer", default=os.path.join(ROOT, "cache", "smollm2", "hf"),
                    help="tokenizer folder for the config model (default: SmolLM2's, if fetched)")
parser.add_argument("--records", type=int, default=8, help="trajectories = global batch (one step = all)")
parser.add_argument("--steps", type=int, default=3, help="optimizer steps of each run")
parser.add_argument("--micro-batch-size", type=int, default=4, help="trajectories per micro-batch (both runs)")
parser.add_argument("--ratio", type=float, default=0.3, help="share of steps kept as critical (loss true)")
parser.add_argument("--max-length", type=int, default=2048, help="--max-length of both runs")
args = parser.parse_args()

import torch  # noqa: E402
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, Trainer,  # noqa: E402
                          TrainerCallback, TrainingArguments)

work = tempfile.mkdtemp(prefix="bench_train_")
import atexit  # noqa: E402
atexit.register(shutil.rmtree, work, True)
# ---- model
if args.model is None:
    if os.path.exists(os.path.join(args.tokenizer, "tokenizer.json")):
        tok = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        print(f"no tokenizer at {args.tokenizer} (run scripts/get_smollm2.py); using the tiny test tokenizer")
        tok = tiny_tokenizer("llama")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=384, intermediate_size=1024, num_hidden_layers=6,
                         num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=8192,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    model_dir = os.path.join(work, "model")
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
else:
    model_dir = args.model
    tok = AutoTokenizer.from_pretrained(model_dir)
n_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model_dir).parameters())

# ---- data: ATLaS-style records (loss true on a random 30% of the steps)
rng = random.Random(0)
records = []
for rec in make_records(args.records, seed=1, min_steps=3, max_steps=8, words=(5, 25)):
    steps = step_indices(rec)
    records.append(with_selection(rec, rng.sample(steps, max(1, int(args.ratio * len(steps)))), {"method": "bench"}))
data_path = os.path.join(work, "data.jsonl")
with open(data_path, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)
tokenized = [tokenize_record(r, tok, args.max_length) for r in records]
step_tokens = sum(len(t["input_ids"]) for t in tokenized)
print(f"model {n_params / 1e6:.1f}M params | {len(records)} trajectories, {step_tokens} tokens per step, "
      f"{sum(t['n_loss_tokens'] for t in tokenized)} loss tokens | {torch.get_num_threads()} threads")

# ---- train.py (one process), fp32 and bf16 compute
def run_ours(dtype):
    out = os.path.join(work, f"ours_{dtype}")
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--data", data_path, "--model", model_dir, "--output", out,
           "--batch-size", str(args.records), "--micro-batch-size", str(args.micro_batch_size),
           "--micro-batch-tokens", str(10 ** 9), "--epochs", str(args.steps), "--max-length", str(args.max_length),
           "--dtype", dtype, "--save-minutes", "0"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stdout[-2000:] + r.stderr[-3000:])
    rows = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    return rows, rows[-1]["time"] - rows[0]["time"]


ours, ours_time = run_ours("float32")
ours_bf16, bf16_time = run_ours("bfloat16")

# ---- HF Trainer (same model, same labels, same lr schedule, token-weighted loss over the accumulation)
class Rows(torch.utils.data.Dataset):
    def __len__(self):
        return len(tokenized)

    def __getitem__(self, i):
        return {"input_ids": tokenized[i]["input_ids"], "labels": tokenized[i]["labels"]}


def collate(rows):
    L = max(len(r["input_ids"]) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.tensor([r["input_ids"] + [pad] * (L - len(r["input_ids"])) for r in rows])
    labels = torch.tensor([r["labels"] + [-100] * (L - len(r["labels"])) for r in rows])
    mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (L - len(r["input_ids"])) for r in rows])
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class Clock(TrainerCallback):
    times, losses = [], []

    def on_step_end(self, a, state, control, **kw):
        self.times.append(time.time())

    def on_log(self, a, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])


targs = TrainingArguments(output_dir=os.path.join(work, "hf"), per_device_train_batch_size=args.micro_batch_size,
                          gradient_accumulation_steps=args.records // args.micro_batch_size, learning_rate=2e-5,
                          weight_decay=0.0, lr_scheduler_type="cosine", warmup_steps=0.03, max_steps=args.steps,
                          max_grad_norm=1.0, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                          dataloader_num_workers=0, seed=0, disable_tqdm=True)
trainer = Trainer(model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), args=targs,
                  train_dataset=Rows(), data_collator=collate, callbacks=[Clock()])
trainer.train()
hf_time = Clock.times[-1] - Clock.times[0]

n = args.steps - 1
print(f"train.py: {n * step_tokens / ours_time:.0f} tok/s | HF Trainer: {n * step_tokens / hf_time:.0f} tok/s | "
      f"ratio {hf_time / ours_time:.2f}x (goal >= 1.0) | step-1 loss {ours[0]['loss']:.5f} vs {Clock.losses[0]:.5f} "
      f"(diff {abs(ours[0]['loss'] - Clock.losses[0]):.1e}) | step-{args.steps} loss {ours[-1]['loss']:.5f} vs "
      f"{Clock.losses[-1]:.5f}")
# model FLOPs as train.py counts them (flops.train_flops, in its metrics): the work a step needs, credited to both
# (the Trainer also computes the trimmed tail and the LM head at every position, which is not counted as useful)
model_flops = sum(r["flops"] for r in ours[1:])  # steps 2..N, as the times
print(f"model TFLOP/s (flops.py): train.py {flops.mfu(model_flops, ours_time, 1, None)[0]:.4f} | HF Trainer "
      f"{flops.mfu(model_flops, hf_time, 1, None)[0]:.4f}")
from devices import cpu_has_native_bf16  # noqa: E402
print(f"train.py bf16: {n * step_tokens / bf16_time:.0f} tok/s | fp32: {n * step_tokens / ours_time:.0f} tok/s | "
      f"bf16/fp32 ratio {ours_time / bf16_time:.2f}x (CPU native bf16 matmul: {cpu_has_native_bf16()}; goal >= 1.8 "
      f"where native) | step-1 loss bf16 {ours_bf16[0]['loss']:.5f} vs fp32 {ours[0]['loss']:.5f}")
# the numbers for bench/run_all.py (a JSON last line wins over its patterns)
print(json.dumps({"ratios": {"train.py tok/s / HF Trainer tok/s": hf_time / ours_time,
                             "|step-1 loss train.py - HF Trainer|": abs(ours[0]["loss"] - Clock.losses[0]),
                             "train.py tok/s bf16 / fp32 on this CPU": ours_time / bf16_time},
                  "goals": {"train.py tok/s / HF Trainer tok/s": ">= 1.0",
                            "|step-1 loss train.py - HF Trainer|": "~0 (fp32)",
                            "train.py tok/s bf16 / fp32 on this CPU": ">= 1.8 if native bf16"}}))
