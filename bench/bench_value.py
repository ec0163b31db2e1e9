"""Value-estimation throughput: policy calls per second at --concurrency 1 vs 8, with a stub policy of fixed latency.

    python bench/bench_value.py                    # 50 ms per policy call, built-in maze, 4 trajectories, N = 2
    python bench/bench_value.py --latency 0.2 --env wordle --input data/wordle_train.jsonl

The stub answers like a model server: each conversation's turn takes --latency seconds, and the turns of the
episodes running together are requested in parallel (as agent.OpenAIPolicy does against vLLM), so the time is
latency-bound as with a real served model. It plays the expert's move with probability --p-expert and an invalid
action otherwise (seeded), so rollouts have different lengths and outcomes. The same trajectories and rollouts run
through value_estimate.estimate at each concurrency; a policy call is one assistant turn of one rollout.
"""
import argparse
import os
import random
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import trajectory  # noqa: E402
import value_estimate  # noqa: E402
from envs import make_env  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--env", default="maze", help="built-in environment")
p.add_argument("--input", default=os.path.join(ROOT, "data", "maze_train.jsonl"), help="expert trajectories")
p.add_argument("--n", type=int, default=4, help="number of trajectories")
p.add_argument("--rollouts", type=int, default=2, help="rollouts per step")
p.add_argument("--latency", type=float, default=0.05, help="seconds per policy call (per conversation)")
p.add_argument("--p-expert", type=float, default=0.5, help="probability that the stub plays the expert's move")
p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="concurrency levels to compare")
args = p.parse_args()


class LatencyStub:
    def __init__(self, latency, p_expert, seed=0):
        self.latency, self.p_expert, self.calls = latency, p_expert, 0
        self.rng, self.lock, self.pool = random.Random(seed), threading.Lock(), ThreadPoolExecutor(64)

    def one(self, env):
        time.sleep(self.latency)
        with self.lock:
            expert = self.rng.random() < self.p_expert
        return env.expert_turn() if expert else "Thought: I am not sure.\nAction: wait"

    def __call__(self, conversations, envs, temperature=None):
        self.calls += len(envs)
        return list(self.pool.map(self.one, envs))


recs = trajectory.read_records(args.input)[:args.n]
n_steps = sum(len(trajectory.step_indices(r)) for r in recs)
print(f"{args.env}: {len(recs)} trajectories, {n_steps} steps, {args.rollouts} rollouts per step and start state, "
      f"stub latency {args.latency * 1000:.0f} ms per call")
rates = {}
for c in args.concurrency:
    stub, stats = LatencyStub(args.latency, args.p_expert), defaultdict(int)
    t0 = time.perf_counter()
    for _ in value_estimate.estimate(recs, lambda: make_env(args.env), stub, rollouts=args.rollouts,
                                     concurrency=c, env_name=args.env, stats=stats):
        pass
    dt = time.perf_counter() - t0
    assert stub.calls == stats["policy_calls"]
    rates[c] = stats["policy_calls"] / dt
    print(f"concurrency {c:>3}: {stats['episodes']} rollouts, {stats['policy_calls']} policy calls in {dt:6.1f} s "
          f"= {rates[c]:7.1f} calls/s (ideal {c / args.latency:.0f}/s)")
lo, hi = min(args.concurrency), max(args.concurrency)
print(f"speed-up of concurrency {hi} over {lo}: {rates[hi] / rates[lo]:.1f}x")
