"""One forward pass per trajectory vs one per step: time to score every step's perplexity, same data, same model.

    python bench/bench_perplexity.py                                  # bundled maze trajectories with >= 10 steps
    python bench/bench_perplexity.py --model tiny --n 12              # a random 6-layer Llama, a minute on a laptop
    python bench/bench_perplexity.py --input data/agenttraj_l.json --model meta-llama/Llama-3.1-8B-Instruct --dtype bfloat16

Both ways run perplexity.step_ppls, i.e. the same kernels; only the number of forward passes differs:
  naive     one pass per step over the prefix that ends with the step (the per-step definition of eq. 5)
  one-pass  one pass per trajectory, batch of 1
  batched   one pass per trajectory, trajectories packed by a token budget (what perplexity.py runs)
Prints the seconds of each, the speed-ups and the largest relative difference of the scores (should be ~1e-6).
Default model: SmolLM2-135M-Instruct from cache/smollm2/hf when present, else a random 6-layer Llama (hidden 256)
with the tiny Llama-3 tokenizer of the tests.
"""
import argparse
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import perplexity  # noqa: E402
import devices
import trajectory  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--input", default=os.path.join(ROOT, "data", "maze_train.jsonl"), help="trajectories")
p.add_argument("--min-steps", type=int, default=10, help="use trajectories with at least this many steps")
p.add_argument("--n", type=int, default=6, help="number of trajectories")
p.add_argument("--model", default=None, help="model folder, or 'tiny' for the random 6-layer Llama (default: see the "
                                          "docstring)")
p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="model dtype")
p.add_argument("--batch-tokens", type=int, default=16384, help="token budget of the batched one-pass way (as in "
                                                               "perplexity.py)")
p.add_argument("--repeats", type=int, default=1, help="time each way this many times, keep the fastest")
args = p.parse_args()

torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = getattr(torch, args.dtype)
model_path = None if args.model == "tiny" else args.model or (os.path.join(ROOT, "cache", "smollm2", "hf")
                            if os.path.exists(os.path.join(ROOT, "cache", "smollm2", "hf", "config.json")) else None)
if model_path:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    name = model_path
else:
    from tests.tiny import tiny_model, tiny_tokenizer
    tok = tiny_tokenizer("llama")
    model = tiny_model("llama", tok, hidden=256, layers=6).to(dtype)
    name = "random Llama 6x256 (tests/tiny.py)"
model = model.to(device).eval()

recs = [r for r in trajectory.read_records(args.input) if len(trajectory.step_indices(r)) >= args.min_steps][:args.n]
assert recs, f"{args.input}: no trajectory with >= {args.min_steps} steps"
items = []
for rec in recs:
    t = trajectory.tokenize_record(rec, tok)
    items.append((rec["item_id"], t["input_ids"], t["spans"]))
n_steps = sum(len(s) for _, _, s in items)
n_tok = sum(len(x) for _, x, _ in items)
print(f"model {name} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params, {args.dtype}, {device}, "
      f"{torch.get_num_threads()} threads); {len(items)} trajectories, {n_steps} steps "
      f"({n_steps / len(items):.1f} per trajectory), {n_tok} tokens ({n_tok / len(items):.0f} per trajectory)")


def sync():
    if device == "cuda":
        torch.cuda.synchronize()


def naive():
    out = []
    for key, ids, spans in items:
        scores = {}
        for s, (a, b) in spans.items():
            scores.update(perplexity.step_ppls(model, [(key, ids[:b], {s: (a, b)})])[0])
        out.append(scores)
    return out


def one_pass():
    return [perplexity.step_ppls(model, [it])[0] for it in items]


def batched():
    got = {}
    for cut in devices.token_budget_batches([len(it[1]) for it in items], args.batch_tokens):
        batch = [items[k] for k in cut]
        for it, scores in zip(batch, perplexity.step_ppls(model, batch)):
            got[it[0]] = scores
    return [got[key] for key, _, _ in items]


def timed(fn):
    best, res = float("inf"), None
    for _ in range(args.repeats):
        sync()
        t0 = time.perf_counter()
        res = fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best, res


one_pass()  # warm-up
t_naive, r_naive = timed(naive)
t_one, r_one = timed(one_pass)
t_bat, r_bat = timed(batched)
diff = max(abs(x[s] - y[s]) / y[s] for a, b in ((r_one, r_naive), (r_bat, r_naive)) for x, y in zip(a, b) for s in y)
print(f"naive (one pass per step):       {t_naive:8.2f} s  ({n_steps / t_naive:7.3g} steps/s)")
print(f"one pass per trajectory:         {t_one:8.2f} s  ({n_steps / t_one:7.3g} steps/s)  "
      f"speed-up {t_naive / t_one:5.1f}x")
print(f"one pass, token-budget batches:  {t_bat:8.2f} s  ({n_steps / t_bat:7.3g} steps/s)  "
      f"speed-up {t_naive / t_bat:5.1f}x")
print(f"largest relative difference of the step PPLs vs naive: {diff:.1e}")
print(f"goal >= 5x on trajectories of >= 10 steps: {'met' if t_naive / t_one >= 5 else 'NOT met'} "
      f"(one pass per trajectory, {t_naive / t_one:.1f}x)")
