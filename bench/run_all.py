"""
Run every benchmark of the project (bench/bench_*.py) one after the other and print one table of the ratios they
measured in this same run, on this machine, now.

    python bench/run_all.py                          # all of them, each with its own defaults
    python bench/run_all.py --only select trim       # a subset (names after bench_)
    python bench/run_all.py --results bench/RESULTS.md   # also append the table, date and machine there

Each bench prints its numbers in its own words; the ratios are read from its stdout (a last line that is a JSON
object {"ratios": {name: value}} wins; otherwise the patterns in PARSE below, one per bench, pick the numbers out
of the lines the bench prints; the patterns in ALWAYS are read in both cases, e.g. bench_kv's "identical greedy
outputs"). A bench whose output no longer matches is shown as "unparsed" with its last line, never silently
dropped. Full outputs go to out/bench/<name>.log.

What one run gives (issue 12), among the rest: train.py tokens/s bf16 / fp32 on this CPU (bench_train), and the
hf policy's evaluation episodes/s with KV reuse / re-prefill on SmolLM2-135M maze episodes with the number of
episodes whose greedy outputs were identical (bench_kv; it fails, shown as FAILED with its reason, if any differ).

Benches run sequentially: they time things and would disturb each other on a 2-core machine. The machine's load
average is printed before and after, because the other processes running on it count.
"""
import argparse
import datetime
import glob
import json
import os
import platform
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM = r"([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"

# bench name -> [(metric, regex with one number group, goal)]; the LAST match in stdout is taken
PARSE = {
    "select": [
        ("select.py request loop / ideal (c/latency)", r"loop: +[\d.]+/s -> ratio " + NUM, ">= 0.90"),
        ("select.py steady state / ideal", r"steady state: +[\d.]+/s -> ratio " + NUM, ">= 0.90"),
        ("select.py loop / bare stdlib client", r"select\.py loop / bare client on this machine now: " + NUM, "~1"),
    ],
    "train": [
        ("train.py tok/s / HF Trainer tok/s", r"ratio " + NUM + r"x \(goal", ">= 1.0"),
        ("|step-1 loss train.py - HF Trainer|", r"\(diff " + NUM + r"\)", "~0 (fp32)"),
    ],
    "perplexity": [
        ("perplexity one pass / naive per-step (speed-up)", r"one pass per trajectory: .*speed-up +" + NUM + "x",
         ">= 5"),
        ("perplexity token-budget batches / naive", r"one pass, token-budget batches: .*speed-up +" + NUM + "x", ""),
        ("max rel. diff of step PPLs vs naive", r"largest relative difference of the step PPLs vs naive: " + NUM,
         "<= 1e-5"),
    ],
    "evaluate": [
        ("evaluate --concurrency 8 / 1 (100 ms stub)", r"throughput gain of --concurrency 8 over 1: " + NUM + "x",
         "ideal 8"),
    ],
    "value": [
        ("value_estimate concurrency hi / lo (stub)", r"speed-up of concurrency \d+ over \d+: " + NUM + "x", ""),
    ],
}

# bench name -> [(metric, regex with one number group, goal)] read from stdout whether or not a JSON last line gives
# the ratios: what a bench states in words only. bench_kv compares the greedy conversations of KV reuse and
# re-prefill and exits 1 if any differ: this row gives the number of episodes found identical.
ALWAYS = {
    "kv": [("hf eval: episodes with identical greedy outputs, KV reuse vs re-prefill",
            r"greedy conversations identical in all (\d+) episodes", "all")],
}
# bench name -> regex of the stdout line that says why the bench failed (shown instead of stderr's last line)
FAILS = {"kv": r"NOT IDENTICAL: .*"}


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def parse(name, stdout):
    """[(metric, value or None, goal)] from a bench's stdout: its JSON last line or else PARSE's patterns, then
    ALWAYS's."""
    rows = json_ratios(stdout)
    return (find(PARSE.get(name, []), stdout) if rows is None else rows) + find(ALWAYS.get(name, []), stdout)


def json_ratios(stdout):
    """[(metric, value, goal)] from a last line {"ratios": {...}, "goals": {...}}; None without one."""
    lines = [l for l in stdout.splitlines() if l.strip()]
    if lines:
        try:
            last = json.loads(lines[-1])
            if isinstance(last, dict) and isinstance(last.get("ratios"), dict):
                goals = last.get("goals", {})
                return [(k, float(v), goals.get(k, "")) for k, v in last["ratios"].items()]
        except ValueError:
            pass
    return None


def find(patterns, stdout):
    """[(metric, the number of the LAST match of its regex or None, goal)]"""
    rows = []
    for metric, rx, goal in patterns:
        found = re.findall(rx, stdout)
        rows.append((metric, float(found[-1]) if found else None, goal))
    return rows


def get_args():
    p = argparse.ArgumentParser(description="run every bench/bench_*.py and print one table of ratios")
    p.add_argument("--only", nargs="*", default=None, help="bench names to run (e.g. select train); default: all")
    p.add_argument("--timeout", type=int, default=1800, help="seconds one bench may take before it is stopped")
    p.add_argument("--logs", default=os.path.join(ROOT, "out", "bench"), help="where each bench's output goes")
    p.add_argument("--results", default=None, help="also append a dated markdown section to this file")
    return p.parse_args()


def pick_benches(only):
    """The bench files to run, in name order: all of bench/bench_*.py, or those named in --only."""
    benches = sorted(glob.glob(os.path.join(ROOT, "bench", "bench_*.py")))
    names = [os.path.basename(b)[len("bench_"):-3] for b in benches]
    if only:
        unknown = set(only) - set(names)
        if unknown:
            sys.exit(f"unknown bench(es) {sorted(unknown)}; there are: {', '.join(names)}")
        benches = [b for b, n in zip(benches, names) if n in only]
    return benches


def describe_machine():
    """(one line naming CPU, memory, OS, Python, torch, GPU and the CPU's avx/amx/bf16 flags; whether CUDA is there)"""
    machine = (f"{cpu_name()}, {os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f}"
               f" GiB, {platform.system()} {platform.release()}, Python {platform.python_version()}")
    has_cuda = False
    try:
        import torch
        has_cuda = torch.cuda.is_available()
        machine += f", torch {torch.__version__}" + (f", GPU {torch.cuda.get_device_name(0)}" if has_cuda
                                                      else ", no GPU")
    except ImportError:
        pass
    sys.path.insert(0, ROOT)
    from devices import cpu_has_native_bf16
    flags = set()
    for line in open("/proc/cpuinfo") if os.path.exists("/proc/cpuinfo") else []:
        if line.startswith(("flags", "Features")):
            flags |= set(line.split(":", 1)[1].split())
    machine += (f", CPU flags: {' '.join(sorted(f for f in flags if 'avx' in f or 'amx' in f or 'bf16' in f)) or '-'}"
                f" (native bf16 matmul: {'yes' if cpu_has_native_bf16() else 'no'})")
    return machine, has_cuda


def run_bench(path, args, has_cuda):
    """Run one bench, its output to its log; its rows of the table: (bench, metric, value, goal, seconds)."""
    name = os.path.basename(path)[len("bench_"):-3]
    log = os.path.join(args.logs, f"{name}.log")
    if name == "gpu" and not has_cuda:  # its CPU smoke path runs in the tests; here it would measure nothing
        print(f"\n--- bench_{name}.py: skipped, no CUDA device", flush=True)
        return [(name, "skipped: no CUDA device (the test runs its --smoke path)", None, "", 0)]
    print(f"\n--- bench_{name}.py (log: {log})", flush=True)
    t0 = time.time()
    try:
        run = subprocess.run([sys.executable, path], cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
        rc, stdout, stderr = run.returncode, run.stdout, run.stderr
    except subprocess.TimeoutExpired as e:
        rc, stdout, stderr = "timeout", (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), ""
    dt = time.time() - t0
    with open(log, "w") as f:
        f.write(stdout + "\n--- stderr\n" + stderr)
    lines = [l for l in stdout.splitlines() if l.strip()]
    print("\n".join(lines[-6:]))
    rows = parse(name, stdout)
    if rc != 0:
        said = re.findall(FAILS[name], stdout) if name in FAILS else []
        tail = (said or stderr.strip().splitlines() or ["?"])[-1][:100]
        return [(name, f"FAILED (exit {rc}): {tail}", None, "", dt)]
    if not rows:
        return [(name, "no parser for this bench; last line: " + (lines[-1][:80] if lines else ""), None, "", dt)]
    return [(name, metric if value is not None else f"{metric} (unparsed; see log)", value, goal, dt)
            for metric, value, goal in rows]


def number(value):
    return "-" if value is None else (f"{value:.1e}" if value != 0 and abs(value) < 1e-3 else f"{value:.3f}")


def print_table(table):
    w = max([len(m) for _, m, _, _, _ in table] + [10])
    head = f"{'bench':11} {'metric':{w}} {'value':>9} {'goal':>10} {'bench s':>8}"
    out = [head, "-" * len(head)]
    for name, metric, value, goal, dt in table:
        out.append(f"{name:11} {metric:{w}} {number(value):>9} {goal:>10} {dt:8.0f}")
    print("\n" + "\n".join(out))


def append_results(path, table, started, machine, load0):
    """A dated markdown section: the machine, the load, the command and the table."""
    with open(path, "a") as f:
        f.write(f"\n## Run of {started}\n\nMachine: {machine}; load average at the start "
                f"{load0:.1f}, at the end {os.getloadavg()[0]:.1f} (other work shares the machine).\n"
                f"Command: `{' '.join(['python'] + sys.argv)}`\n\n")
        f.write("| bench | metric | value | goal | bench s |\n|---|---|---|---|---|\n")
        for name, metric, value, goal, dt in table:
            f.write(f"| {name} | {metric} | {number(value)} | {goal} | {dt:.0f} |\n")
    print(f"appended to {path}")


def main():
    args = get_args()
    benches = pick_benches(args.only)
    os.makedirs(args.logs, exist_ok=True)
    machine, has_cuda = describe_machine()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load0 = os.getloadavg()[0]
    print(f"{started} | {machine} | load average {load0:.1f}")
    table = []  # (bench, metric, value, goal, seconds)
    for path in benches:
        table += run_bench(path, args, has_cuda)
    print_table(table)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if args.results:
        append_results(args.results, table, started, machine, load0)


if __name__ == "__main__":
    main()
