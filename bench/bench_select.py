"""Throughput of select.py against a slow OpenAI-compatible server, as a share of the ideal.

With every answer taking L seconds and C requests in flight, no client can beat C / L trajectories per second.
This starts tests/oracle_server.py with --latency L, runs the real select.py (the openai client, threads, the
resumable writer) on N synthetic AgentTraj-L-like trajectories, and prints achieved / ideal. Goal (issue 2): >= 0.90
at L = 0.2 s, C = 16, N = 200.

    python bench/bench_select.py                      # L = 0.2, C = 16, N = 200
    python bench/bench_select.py --latency 0.5 --concurrency 64 --n 1000

"achieved" is measured by the server: trajectories answered / (last answer - first request's arrival), i.e. the
rate while selecting. Printed beside it, for honesty: select.py's own timing of its loop (which adds its one-time
warm-up: threads, connections, the SDK's lazy imports on the first call) and the whole process's wall time (which
adds Python start-up and imports, ~1 s on an idle machine; both are paid once per run, not per trajectory).
"""
import json
import argparse
import os
import urllib.request
import re
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from oracle_server import make_records, write_jsonl  # noqa: E402

p = argparse.ArgumentParser(description="select.py throughput vs the ideal concurrency / latency")
p.add_argument("--latency", type=float, default=0.2, help="server seconds per answer (issue 2: 0.2)")
p.add_argument("--concurrency", type=int, default=16, help="select.py --concurrency (issue 2: 16)")
p.add_argument("--n", type=int, default=200, help="trajectories (issue 2: 200)")
args = p.parse_args()

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "oracle_server.py"), "--port", str(port),
                           "--latency", str(args.latency)], stdout=subprocess.PIPE, text=True)
try:
    server.stdout.readline()  # the server prints one line once it listens
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.jsonl"), os.path.join(tmp, "out.jsonl")
        write_jsonl(inp, make_records(args.n, seed=7, min_steps=3, max_steps=30))
        env = {**os.environ, "OPENAI_API_KEY": "sk-bench-placeholder"}
        t0 = time.time()
        run = subprocess.run([sys.executable, "select.py", "--input", inp, "--output", out, "--base-url",
                              f"http://127.0.0.1:{port}/v1", "--concurrency", str(args.concurrency)],
                             cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.time() - t0
        if run.returncode != 0:
            sys.exit(f"select.py failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
        with open(out) as f:
            n_out = sum(1 for _ in f)
        m = re.search(r"throughput: (\d+) trajectories in ([\d.]+)s", run.stdout)
        n, loop = int(m.group(1)), float(m.group(2))
        stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats"))
finally:
    server.terminate()
    server.wait()

assert n == n_out == stats["requests"] == args.n, (n, n_out, stats, args.n)
ideal = args.concurrency / args.latency
span = stats["last_answer"] - stats["first_arrival"]
print(f"{n} trajectories, latency {args.latency}s, concurrency {args.concurrency}: ideal {ideal:.1f}/s "
      f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
print(f"selecting (server-side span): {span:.2f}s, {n / span:.1f}/s -> ratio {n / span / ideal:.3f} (goal >= 0.90)")
print(f"select.py loop incl. warm-up: {loop:.2f}s, {n / loop:.1f}/s -> ratio {n / loop / ideal:.3f}")
print(f"whole process incl. start-up: {wall:.2f}s, {n / wall:.1f}/s -> ratio {n / wall / ideal:.3f}")
