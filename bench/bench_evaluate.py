"""Benchmark of the agent-environment loop: episodes/s per built-in env with the expert policy, and the throughput
gain of --concurrency 8 over 1 with a model of fixed 100 ms latency (the expert stub OpenAI server,
tests/expert_server.py, behind the real OpenAIPolicy and HTTP). All ratios are measured in this one run.

    python bench/bench_evaluate.py                       # all built-in envs that are installed
    python bench/bench_evaluate.py --envs maze wordle --latency 0.1 --episodes 24
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent import ExpertPolicy, OpenAIPolicy, run_episodes  # noqa: E402
from envs import BUILTIN, make_env  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# episodes per env for the expert timing (test ids, in order): SciWorld (Java, gold-path planning) is the slow one
DEFAULT_EPISODES = {"maze": 50, "wordle": 50, "babyai": 48, "sciworld": 10}


def available(name):
    try:
        if name == "sciworld" and shutil.which("java") is None:
            return False
        make_env(name).close()
        return True
    except Exception as e:  # missing package
        print(f"{name}: skipped ({type(e).__name__}: {e})")
        return False


def test_ids(name, n):
    path = os.path.join(ROOT, "data", f"{name}_test_ids.txt")
    ids = [int(x) for x in open(path) if x.strip()] if os.path.exists(path) else list(range(n))
    return ids[:n]


def timed(make, policy, ids, concurrency):
    t0 = time.perf_counter()
    res = list(run_episodes(make, policy, [{"task_id": i} for i in ids], concurrency=concurrency))
    secs = time.perf_counter() - t0
    return len(res) / secs, sum(r["success"] for r in res) / len(res), sum(r["rounds"] for r in res) / len(res)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", nargs="+", default=list(BUILTIN), help="built-in envs to time")
    ap.add_argument("--episodes", type=int, default=None, help="episodes per env (default: per-env table)")
    ap.add_argument("--latency", type=float, default=0.1, help="stub model latency per request, seconds")
    ap.add_argument("--latency-episodes", type=int, default=48, help="maze episodes for the concurrency gain")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cpu cores")
    print(f"{'env':10} {'episodes':>8} {'rounds/ep':>9} {'success':>8} {'ep/s c=1':>9} {'ep/s c=2':>9}")
    for name in args.envs:
        if not available(name):
            continue
        ids = test_ids(name, args.episodes or DEFAULT_EPISODES.get(name, 20))
        eps1, succ, rounds = timed(lambda: make_env(name), ExpertPolicy(), ids, 1)
        eps2, _, _ = timed(lambda: make_env(name), ExpertPolicy(), ids, 2)
        print(f"{name:10} {len(ids):8d} {rounds:9.1f} {succ:8.3f} {eps1:9.2f} {eps2:9.2f}")

    # the stub model server runs in its own process, as a real model server would (no GIL shared with the loop)
    ids = list(range(args.latency_episodes))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "expert_server.py"), "--env", "maze",
                               "--tasks", f"0:{len(ids)}", "--port", str(port), "--latency", str(args.latency)],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.PIPE)
    server.stdout.readline()  # "expert stub for maze at ..." once it listens
    url = f"http://127.0.0.1:{port}/v1"
    try:
        policy = OpenAIPolicy("stub", url, timeout=60)
        rate = {}
        for c in (1, 8):
            rate[c], succ, rounds = timed(lambda: make_env("maze"), policy, ids, c)
            print(f"openai policy, {args.latency * 1000:.0f} ms stub latency, maze, concurrency {c}: "
                  f"{rate[c]:.2f} ep/s ({rounds:.1f} rounds/ep, success {succ:.3f})")
    finally:
        server.terminate()
        server.wait()
    print(f"throughput gain of --concurrency 8 over 1: {rate[8] / rate[1]:.2f}x (ideal 8x; "
          f"{len(ids)} episodes, ragged episode lengths leave slots idle at the end)")
