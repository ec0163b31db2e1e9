"""Benchmark of KV-cache reuse in the hf policy: evaluation episodes/s with each running episode keeping its
key/value states across rounds (agent.HFPolicy(kv_cache=True), the default) against a full re-prefill of the whole
conversation every round (kv_cache=False), on the same maze episodes, batched as evaluate.py runs them. The greedy
conversations must be identical (same tokens); the bench fails otherwise.

    python bench/bench_kv.py                          # SmolLM2-135M-Instruct (scripts/get_smollm2.py makes it)
    python bench/bench_kv.py --episodes 4 --concurrency 4 --max-new-tokens 512
    python bench/bench_kv.py --model tiny             # smoke path: a tiny random model built locally (tests/tiny.py)

Defaults: 8 maze episodes (AgentGym's games 0-7) at once, as evaluate.py runs them by default (--concurrency 8), the
env's 15 rounds, 4096 tokens of context, answers capped at 64 tokens. The cap is the one departure from the protocol
(512): a trained model's maze turn is ~30-40 tokens, while the untrained SmolLM2 fills any cap in its first turn
(512 tokens: ~6 min per round here), which would time only decoding. With the cap SmolLM2 answers 31-37 tokens from
round 2 on. About 13 minutes here (2 cores, fp32: re-prefill 636-656 s, KV reuse 138-146 s).

The ratio grows with the batch: decoding costs both ways the same and, on a CPU, is bound by reading the weights
once per token whatever the batch (SmolLM2-135M in fp32 on 2 cores: ~0.1 s per token at batch 2), while the
prefill that KV reuse saves grows with every episode in the batch. Measured here: 2.77x at --concurrency 2
(--episodes 2), 4.50x and 4.60x at 8 (two runs).

Prints each policy's episodes/s and rounds/s, the prefilled and reused token counts, and the ratio (goal >= 3x),
then one JSON line {"ratios": ...} for bench/run_all.py.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

from agent import HFPolicy, run_episodes  # noqa: E402
from envs import make_env  # noqa: E402

SMOLLM2 = os.path.join(ROOT, "cache", "smollm2", "hf")


def get_model(name):
    if name == "tiny":
        from tests.tiny import save_tiny
        return save_tiny(os.path.join(tempfile.mkdtemp(prefix="bench_kv_"), "qwen"), "qwen", initializer_range=0.5)
    if name == "smollm2":
        if not os.path.isdir(SMOLLM2):
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "get_smollm2.py")], cwd=ROOT, check=True)
        return SMOLLM2
    return name


def run(policy, env, ids, concurrency, max_rounds):
    calls = []

    def timed(convs, envs, temperature=None):  # one line per batched round on stderr: where the time goes
        t = time.time()
        out = policy(convs, envs, temperature)
        calls.append(time.time() - t)
        gen = [len(g) for g in policy.last_tokens if g is not None]
        print(f"  round {len(calls)}: {len(convs)} episodes, answers {gen} tokens, {calls[-1]:.1f}s", file=sys.stderr,
              flush=True)
        return out

    timed.forget = policy.forget
    t0 = time.time()
    res = {r["item_id"]: r for r in run_episodes(lambda: make_env(env), timed, [{"task_id": i} for i in ids],
                                                 concurrency=concurrency, max_rounds=max_rounds)}
    return res, time.time() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2", help="smollm2 (cache/smollm2/hf), tiny, or a model folder")
    p.add_argument("--env", default="maze", help="built-in environment")
    p.add_argument("--episodes", type=int, default=8, help="episodes (the env's first test ids)")
    p.add_argument("--concurrency", type=int, default=8,
                   help="episodes per batch, as evaluate.py --concurrency (its default: 8)")
    p.add_argument("--max-rounds", type=int, default=None, help="rounds per episode (default: the env's, maze 15)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="tokens per answer (protocol: 512; see above)")
    p.add_argument("--max-context", type=int, default=4096, help="prompt + answer tokens (AgentGym: 4096)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"],
                   help="auto: bf16 only where it is native")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    folder = get_model(args.model)
    path = os.path.join(ROOT, "data", f"{args.env}_test_ids.txt")
    ids = [int(x) for x in open(path) if x.strip()] if os.path.exists(path) else list(range(args.episodes))
    ids = ids[:args.episodes]
    print(f"bench_kv: {folder}, {args.env} tasks {ids}, concurrency {args.concurrency}, max rounds "
          f"{args.max_rounds or 'env default'}, max new tokens {args.max_new_tokens}, context {args.max_context}, "
          f"{torch.get_num_threads()} torch threads", flush=True)
    kw = dict(max_new_tokens=args.max_new_tokens, max_context=args.max_context, dtype=args.dtype)
    out = {}
    for kv in (False, True):
        policy = HFPolicy(folder, kv_cache=kv, **kw)
        res, secs = run(policy, args.env, ids, args.concurrency, args.max_rounds)
        rounds = sum(r["rounds"] for r in res.values())
        name = "KV reuse" if kv else "re-prefill"
        out[kv] = (res, secs)
        print(f"{name:10}: {len(res)} episodes, {rounds} rounds in {secs:.1f}s -> {len(res) / secs:.4f} episodes/s, "
              f"{rounds / secs:.3f} rounds/s; tokens prefilled {policy.stats['prefill_tokens']}, reused "
              f"{policy.stats['reused_tokens']}, fallbacks {policy.stats['kv_fallbacks']}; ends "
              f"{sorted({r['end'] for r in res.values()})}", flush=True)
        del policy
    (full, t_full), (kv, t_kv) = out[False], out[True]
    differ = [k for k in full if full[k]["conversations"] != kv[k]["conversations"]]
    if differ:
        k = differ[0]
        turns = [(a["value"], b["value"]) for a, b in zip(full[k]["conversations"], kv[k]["conversations"])
                 if a["value"] != b["value"]]
        print(f"NOT IDENTICAL: {len(differ)} of {len(full)} episodes differ; first {k}: {turns[0]!r}")
        sys.exit(1)
    ratio = t_full / t_kv
    print(f"greedy conversations identical in all {len(full)} episodes; KV reuse / re-prefill episodes/s: "
          f"{ratio:.2f}x (goal >= 3x)")
    metric = (f"hf eval episodes/s KV reuse / re-prefill ({os.path.basename(args.model.rstrip('/'))} {args.env}, "
              f"concurrency {args.concurrency})")
    print(json.dumps({"ratios": {metric: round(ratio, 3)}, "goals": {metric: ">= 3"}}))


if __name__ == "__main__":
    main()
