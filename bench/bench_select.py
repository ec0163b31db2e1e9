"""Throughput of select.py against a slow OpenAI-compatible server, as a share of the ideal.

With every answer taking L seconds and C requests in flight, no client can beat C / L trajectories per second.
This starts tests/oracle_server.py with --latency L, runs the real select.py (the openai client, threads, the
resumable writer) on N synthetic AgentTraj-L-like trajectories, and prints achieved / ideal. Goal (issue 2): >= 0.90
at L = 0.2 s, C = 16, N = 200.

    python bench/bench_select.py                      # L = 0.2, C = 16, N = 200
    python bench/bench_select.py --latency 0.5 --concurrency 64 --n 1000

Four rates, from the narrowest to the widest window, all over the same run:
  steady state  answers C+1..N / (last answer - C-th answer), measured by the server: the rate once every
                thread is busy, i.e. what select.py sustains over a 14k-trajectory run;
  selecting     N / (last answer - first request's arrival), measured by the server; adds the first round's
                one-time warm-up (16 new connections, the SDK's lazy set-up on its first calls);
  loop          select.py's own timing of its request loop (its "throughput:" line);
  process       N / the whole process's wall time, adding Python start-up and imports (~1 s idle).
The machine's load average is printed with them: client and server share its CPUs with whatever else runs. So
that a busy machine is not blamed on select.py, a bare client (stdlib http.client, 16 threads, the same prompts,
no SDK, no parsing, no writing) is timed the same way as "loop" right after: the best any Python client could do
here and now.
"""
import argparse
import concurrent.futures
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.client import HTTPConnection

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import trajectory  # noqa: E402
from oracle_server import make_records, write_jsonl  # noqa: E402

p = argparse.ArgumentParser(description="select.py throughput vs the ideal concurrency / latency")
p.add_argument("--latency", type=float, default=0.2, help="server seconds per answer (issue 2: 0.2)")
p.add_argument("--concurrency", type=int, default=16, help="select.py --concurrency (issue 2: 16)")
p.add_argument("--n", type=int, default=200, help="trajectories (issue 2: 200)")
args = p.parse_args()


def bare_client(port, prompts, concurrency):
    """Seconds for `concurrency` threads to post every prompt with http.client (one kept-alive connection each)."""
    local = threading.local()

    def post(prompt):
        if not hasattr(local, "conn"):
            local.conn = HTTPConnection("127.0.0.1", port)
        body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": prompt}]})
        local.conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        assert local.conn.getresponse().read()

    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(post, prompts))
    return time.time() - t0


spec = importlib.util.spec_from_file_location("atlas_select", os.path.join(ROOT, "select.py"))
stage = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stage)
records = make_records(args.n, seed=7, min_steps=3, max_steps=30)
prompts = [stage.build_prompt(r, trajectory.budget(len(trajectory.step_indices(r)), 0.3)) for r in records]
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "oracle_server.py"), "--port", str(port),
                           "--latency", str(args.latency)], stdout=subprocess.PIPE, text=True)
try:
    server.stdout.readline()  # the server prints one line once it listens
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.jsonl"), os.path.join(tmp, "out.jsonl")
        write_jsonl(inp, records)
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
        bare = bare_client(port, prompts, args.concurrency)
finally:
    server.terminate()
    server.wait()

assert n == n_out == stats["requests"] == args.n, (n, n_out, stats["requests"], args.n)
ideal, c, answers = args.concurrency / args.latency, args.concurrency, stats["answers"]
rates = {"steady state": (n - c) / (answers[-1] - answers[c - 1]),
         "selecting": n / (answers[-1] - stats["first_arrival"]), "loop": n / loop, "process": n / wall,
         "bare client": n / bare}
print(f"{n} trajectories, latency {args.latency}s, concurrency {c}: ideal {ideal:.1f}/s "
      f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs); goal: ratio >= 0.90")
for name, rate in rates.items():
    print(f"{name:>12}: {rate:5.1f}/s -> ratio {rate / ideal:.3f}")
print(f"select.py loop / bare client on this machine now: {rates['loop'] / rates['bare client']:.3f}")
