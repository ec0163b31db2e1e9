"""
Every CPU-side stage at growing corpus sizes, up to AgentTraj-L's: time and peak memory, and whether they grow at
most linearly with the number of trajectories (issue 20).

    python bench/bench_scale.py                                # N = 1000, 4000, full (14,485): ~10 min on 2 cores
    python bench/bench_scale.py --sizes 250 1000 4000          # smaller; the oracle's latency part as always
    python bench/bench_scale.py --sizes 250 1000 --latency 2 --rounds 3    # a quick look
    python bench/bench_scale.py --stages read random tokenize --no-latency # some stages only

The corpus is synthetic (nothing of AgentGym's): AgentTraj-L's per-environment counts (ATLaS App. A, and sqlgym's
3,000, not in App. A: the rest of AgentGym's 14,485), each environment with its own number of steps and
turn lengths (its instruction as long as ours in envs/protocol.py, long WebShop and SciWorld observations, one-step
SQL), written as AgentTraj-L is published: one JSON list per env, AgentGym's file names and item-id prefixes. A
size N takes every env in proportion (the full size: exactly the counts); the first records of an env are the same
at every N. Each stage runs in a process of its own (`--stage`, below), so that stages never share a heap; it
reports the seconds of its work (imports and model-free set-up excluded), its CPU seconds, its peak resident memory
(VmHWM, reset before the work) and what the work added to the memory it started with:

  read          trajectory.read_records of every env file (JSON lists, validated): what every stage starts with
  data          scripts/paper_data.py, the driver's data stage: the 10 held-in envs into train.jsonl
  random        select.py --method random (Table 3) on train.jsonl
  oracle        select.py --method oracle against tests/oracle_server.py at zero latency, 16 in flight: the
                client's own CPU per request (the server's is another process and not counted)
  complement    select.py --method complement --reference the oracle's output (Table 2)
  tokenize      train.py's tokenisation of the random selection: trajectory.tokenize_record with SmolLM2's
                tokenizer and chat template (scripts/get_smollm2.py; else the tests' tiny one), --max-length 8192,
                trimmed after the last loss token, kept as train.py keeps its examples (two flat int32 buffers),
                in a thread of its own as train.py runs it (devices.in_own_thread)
  train batches train.py's batching at its defaults: 3 epochs of seeded shuffles, global batch 128, length-sorted
                micro-batches of <= 4 rows and <= 16384 tokens (devices.token_budget_batches), the scan for the
                largest micro-batch, and the padded tensors of every micro-batch (collate)
  ppl batches   perplexity.py's batching: token_budget_batches of the untrimmed lengths at --batch-tokens 16384,
                and the padded id and mask tensors of every batch
  analyze       analyze.py on train.jsonl and the three selections (per file, per env, 6 pairs), no tokenizer

Between two sizes the growth exponent log(t2/t1) / log(N2/N1) is printed for the wall time, the CPU time and the
added memory (freed memory is handed back to the OS first, malloc_trim, so that a small run cannot hide its growth
in it): 1 is linear, 2 quadratic. A row is marked "!" when, between the two largest sizes, both times or the memory
grow with an exponent above 1.2 (a loaded machine inflates the wall time alone; rerun with --repeat before
believing a mark). The padding share of train.py's micro-batches (padded tokens / tokens computed)
is printed for the random 30 % and the complete selection, at the default 16384-token micro-batches and at 8192.

The oracle at GPT-4o-like latency (--latency, 10 s an answer as docs/STAGES.md assumes) cannot run 14,485 times
here: select.py (a process of its own, as run for real) selects --rounds x C trajectories at C = 16 and 64 in
flight against the stand-in with that latency and a 429 on the first attempt of about 1 in --fault-every items
(the stand-in answers a 429 only after the latency, like a slow gateway; select.py then backs off ~0.75 s). The
run's efficiency is its ideal time (C slots taking the items in order, one latency per answer, makespan) over its
measured request loop; a full pass is projected as N x (mean time an item holds a slot) / C over that efficiency.
"""
import argparse
import array
import contextlib
import ctypes
import functools
import gc
import importlib.util
import json
import math
import os
import random
import resource
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import trajectory  # noqa: E402
from tests.agenttraj import FILES  # noqa: E402  (env -> AgentTraj-L's file stem and item-id prefix)

# env: (trajectories in AgentTraj-L, steps (fewest, most common, most), characters of the first observation,
#       of the other observations (from, to), of a Thought + Action step (from, to)); the instruction is as long as
#       ours in envs/protocol.py (sqlgym has none there: 350). The lengths are our estimate of AgentGym's turns.
PROFILE = {
    "webshop": (3930, (3, 5, 10), 300, (200, 1600), (60, 260)),
    "alfworld": (2420, (6, 14, 30), 400, (30, 250), (60, 200)),
    "sciworld": (2120, (5, 18, 30), 900, (20, 1500), (80, 260)),
    "babyai": (810, (1, 4, 18), 400, (150, 1400), (80, 200)),
    "maze": (215, (3, 8, 12), 3000, (60, 300), (150, 210)),
    "wordle": (955, (1, 3, 6), 3200, (10, 60), (150, 260)),
    "textcraft": (374, (2, 6, 20), 1500, (20, 200), (100, 270)),
    "movie": (215, (2, 4, 10), 200, (50, 900), (80, 300)),
    "todo": (135, (2, 4, 10), 200, (50, 600), (80, 300)),
    "weather": (311, (2, 5, 10), 200, (50, 900), (80, 300)),
    "sqlgym": (3000, (1, 1, 1), 900, (300, 2000), (100, 400)),
}
FULL = sum(p[0] for p in PROFILE.values())  # 14,485
HELD_IN = [e for e in PROFILE if e != "sqlgym"]  # sqlgym has no environment here: the data stage leaves it out
SERVED = ["webshop", "alfworld", "movie", "todo", "weather"]  # not built in: paper_data.py wants them in --servers
WORDS = ("the a to of and in you is on it with for that red blue green key door box ball room table shelf drawer "
         "mug apple cabinet counter go take put open close look inventory craft get item price dollars search "
         "click buy size color pack ounce product option next previous page result temperature degree celsius "
         "measure thermometer water heat cool plant seed grow move north south east west left right wall goal "
         "position guess word letter correct wrong date user location tomorrow rain wind movie actor director "
         "release year task todo list project deadline first then because so I think should now need find").split()


# ----------------------------------------------------------------------------- the synthetic corpus

def counts_at(n):
    """Records per env at size n: proportional to AgentTraj-L's counts, largest remainders, summing to n."""
    exact = {e: n * p[0] / FULL for e, p in PROFILE.items()}
    out = {e: int(x) for e, x in exact.items()}
    for e in sorted(exact, key=lambda e: -(exact[e] - out[e]))[:n - sum(out.values())]:
        out[e] += 1
    return out


@functools.lru_cache(maxsize=None)
def text_pool(seed=0, words=200_000):
    """Words drawn from WORDS (~1.1 MB): every turn's text is a slice of it."""
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words))


def make_record(env, i, pool, instructions):
    """Trajectory i of env: the instruction, the ack, then first observation / step / observation / step ...
    The same (env, i) gives the same record at every size."""
    rng = random.Random(f"{env}:{i}")
    _, (lo, mode, hi), first, obs, act = PROFILE[env]

    def text(n):
        start = pool.index(" ", rng.randrange(len(pool) - n - 50)) + 1
        return pool[start:start + n].strip() or "ok"

    conv = [{"from": "human", "loss": None, "value": f"{instructions[env]}\nTask {env} #{i}."},
            {"from": "gpt", "loss": False, "value": "OK"},
            {"from": "human", "loss": None, "value": text(first)}]
    for t in range(max(1, round(rng.triangular(lo, hi, mode)))):
        if t:
            conv.append({"from": "human", "loss": None, "value": "Observation: " + text(rng.randint(*obs))})
        conv.append({"from": "gpt", "loss": True,
                     "value": f"Thought:\n{text(rng.randint(*act))}\n\nAction:\n{text(12)}"})
    return {"conversations": conv, "item_id": f"{FILES[env]}_{i}"}


def write_corpus(folder, n):
    """AgentTraj-L's shape at size n: {env: path of its JSON list}."""
    from envs import protocol
    instructions = {e: protocol.INSTRUCTION.get(e, text_pool(1, 60)[:350]) for e in PROFILE}
    pool, paths = text_pool(), {}
    os.makedirs(folder, exist_ok=True)
    for env, k in counts_at(n).items():
        if k:
            paths[env] = os.path.join(folder, f"{FILES[env]}_train.json")
            with open(paths[env], "w", encoding="utf-8") as f:
                json.dump([make_record(env, i, pool, instructions) for i in range(k)], f, ensure_ascii=False)
    return paths


# ----------------------------------------------------------------------------- one stage, in a process of its own

def mib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def measure(name, work, results):
    """Run work() and append its numbers: seconds, CPU seconds, peak RSS (VmHWM, reset first where Linux lets us:
    /proc/self/clear_refs 5) and the memory it added to what the process held before."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # hand freed memory back, so that the work cannot reuse it
        ctypes.CDLL("libc.so.6").malloc_trim(0)          # unseen (it would hide growth at small N)
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    before, r0, t0 = mib("VmRSS"), resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    extra = work() or {}
    seconds, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    peak = mib("VmHWM")
    results.append({"stage": name, "seconds": seconds, "cpu": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime,
                    "peak_mib": peak, "added_mib": peak - before, **extra})


def load_select():
    spec = importlib.util.spec_from_file_location("atlas_select", os.path.join(ROOT, "select.py"))
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    return stage


def quiet(fn, *a):
    with contextlib.redirect_stdout(sys.stderr):
        return fn(*a)


def run_select(argv):
    try:
        quiet(load_select().main, argv)
    except SystemExit as e:
        if e.code not in (None, 0):
            raise RuntimeError(f"select.py {' '.join(argv)}: {e.code}") from None


def stand_in(latency=0.0, faults="", fault_every=1):
    """tests/oracle_server.py in a process of its own: (process, base url)."""
    server = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "oracle_server.py"), "--port", "0",
                               "--latency", str(latency), "--faults", faults, "--fault-every", str(fault_every)],
                              stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()  # "oracle test server on http://127.0.0.1:PORT/v1 (...)"
    return server, line.split(" on ", 1)[1].split()[0]


def tokenizer_of(path):
    from transformers import AutoTokenizer
    if os.path.exists(os.path.join(path, "tokenizer.json")):
        return AutoTokenizer.from_pretrained(path), "SmolLM2-135M-Instruct"
    from tests.tiny import tiny_tokenizer
    return tiny_tokenizer("qwen"), "tiny qwen (no SmolLM2: run scripts/get_smollm2.py)"


def padding(lengths, cuts):
    """(padded tokens, real tokens) of batches `cuts` (lists of indices into lengths), each padded to its longest."""
    padded = sum(len(c) * max(lengths[j] for j in c) for c in cuts)
    return padded - sum(lengths[j] for c in cuts for j in c), sum(lengths[j] for c in cuts for j in c)


def train_micro_batches(lengths, batch=128, rows=4, tokens=16384, epochs=3, seed=0):
    """train.py's micro-batches of every optimizer step (one rank): epoch_order, step_micro_batches and the scan for
    the largest micro-batch, as train.py writes them."""
    import torch
    from devices import token_budget_batches
    steps_per_epoch = math.ceil(len(lengths) / batch)
    orders = [torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed + e)).tolist()
              for e in range(epochs)]

    def step_micro_batches(step):
        epoch, i = divmod(step, steps_per_epoch)
        mine = sorted(orders[epoch][i * batch:(i + 1) * batch], key=lambda j: -lengths[j])
        return [[mine[k] for k in cut] for cut in token_budget_batches([lengths[j] for j in mine], tokens, rows)]

    steps = [step_micro_batches(s) for s in range(epochs * steps_per_epoch)]
    largest = max((mb for s in range(len(steps)) for mb in step_micro_batches(s)),
                  key=lambda mb: len(mb) * lengths[mb[0]])
    return [mb for s in steps for mb in s], largest


def stage_main(a):
    """One stage in this process (bench_scale.py --stage NAME --dir D): prints one JSON line, the results."""
    d, results = a.dir, []
    files = sorted(os.path.join(d, "corpus", f) for f in os.listdir(os.path.join(d, "corpus")))
    train, sel = os.path.join(d, "data", "train.jsonl"), {m: os.path.join(d, f"{m}.jsonl")
                                                         for m in ("random", "oracle", "complement")}
    if a.stage == "read":
        def work():
            recs = [trajectory.read_records(f) for f in files]
            return {"records": sum(map(len, recs)), "steps": sum(len(trajectory.step_indices(r)) for rs in recs
                                                                 for r in rs)}
        measure("read", work, results)
    elif a.stage == "data":
        for module in ("envs", "envs.agentboard", "runs"):  # paper_data.py's imports, outside the measured work
            importlib.import_module(module)
        present = [e for e in HELD_IN if os.path.join(d, "corpus", f"{FILES[e]}_train.json") in files]  # tiny N
        argv = ["--out", os.path.join(d, "data"), "--train-data", *files, "--train-envs", *present,
                "--servers", *SERVED, "--tasks", *[f"{e}=0:20" for e in SERVED]]

        def work():
            sys.argv = ["scripts/paper_data.py", *argv]
            quiet(runpy.run_path, os.path.join(ROOT, "scripts", "paper_data.py"), None, "__main__")
            return {"records": sum(1 for _ in open(train))}
        measure("data", work, results)
    elif a.stage in ("random", "complement", "oracle"):
        load_select()
        importlib.import_module("openai")  # select.py imports it for the oracle only: outside the measured work
        argv = ["--input", train, "--output", sel[a.stage], "--method", a.stage]
        server = None
        if a.stage == "complement":
            argv += ["--reference", sel["oracle"]]
        if a.stage == "oracle":
            server, url = stand_in()
            os.environ["OPENAI_API_KEY"] = "sk-bench-placeholder"
            argv += ["--base-url", url, "--concurrency", "16"]
        try:
            measure(a.stage, lambda: run_select(argv), results)
        finally:
            if server is not None:
                server.terminate()
                server.wait()
    elif a.stage == "tokenize":
        import torch
        tok, tok_name = tokenizer_of(a.tokenizer)
        records = trajectory.read_records(sel["random"])
        trajectory.tokenize_record(records[0], tok, 8192)  # the chat template is compiled on the first call
        tokenized, examples, kept = [], [], {}

        def tokenize():  # train.py's loop: tokenize, trim after the last loss token, pre-shift, keep (flat int32)
            inputs, targets = array.array("i"), array.array("i")
            for rec in records:
                t = trajectory.tokenize_record(rec, tok, 8192)
                ids, labels = trajectory.trim_after_last_loss(t)
                x, y = ids[:-1], labels[1:]
                tokenized.append((len(t["input_ids"]), max((e for _, e in t["spans"].values()), default=0),
                                  t["n_tokens"]))
                n_loss = sum(l != trajectory.IGNORE_INDEX for l in y)
                if n_loss:
                    examples.append((len(inputs), len(x), n_loss))
                    inputs.extend(x)
                    targets.extend(y)
            kept["inputs"], kept["targets"] = (torch.frombuffer(inputs, dtype=torch.int32),
                                               torch.frombuffer(targets, dtype=torch.int32))
            return {"tokenizer": tok_name, "tokens": sum(n for n, _, _ in tokenized), "examples": len(examples),
                    "truncated": sum(n > 8192 for _, _, n in tokenized)}
        from devices import in_own_thread
        measure("tokenize", lambda: in_own_thread(tokenize), results)  # as train.py runs it: a thread of its own

        def train_batches():
            lengths = [n for _, n, _ in examples]
            micro, largest = train_micro_batches(lengths)
            inputs, targets = kept["inputs"], kept["targets"]
            for mb in micro:  # train.py's collate, without the device copy and the FLOP count
                L = max(lengths[j] for j in mb)
                x = torch.full((len(mb), L), 0, dtype=torch.long)
                y = torch.full((len(mb), L), trajectory.IGNORE_INDEX, dtype=torch.long)
                for r, j in enumerate(mb):
                    s, n, _ = examples[j]
                    x[r, :n], y[r, :n] = inputs[s:s + n], targets[s:s + n]
            pad, real = padding(lengths, micro)
            # the complete selection (every step trained): trimmed after the last step that fits
            full = [e - 1 for _, e, _ in tokenized if e > 1]
            pad_c, real_c = padding(full, train_micro_batches(full)[0])
            pad_8, real_8 = padding(full, train_micro_batches(full, tokens=8192)[0])
            return {"micro_batches": len(micro), "largest": [len(largest), lengths[largest[0]]],
                    "padding_random": pad / (pad + real), "padding_complete": pad_c / (pad_c + real_c),
                    "padding_complete_8192": pad_8 / (pad_8 + real_8)}
        measure("train batches", train_batches, results)

        def ppl_batches():
            from devices import token_budget_batches
            lengths = [n for n, _, _ in tokenized]
            cuts = token_budget_batches(lengths, 16384)
            for cut in cuts:  # step_ppls' input tensors
                ids = torch.zeros(len(cut), lengths[cut[0]], dtype=torch.long)
                mask = torch.zeros(len(cut), lengths[cut[0]], dtype=torch.long)
                for b, j in enumerate(cut):
                    ids[b, :lengths[j]] = torch.arange(lengths[j])
                    mask[b, :lengths[j]] = 1
            pad, real = padding(lengths, cuts)
            return {"batches": len(cuts), "padding": pad / (pad + real)}
        measure("ppl batches", ppl_batches, results)
    elif a.stage == "analyze":
        import analyze
        argv = [train, sel["random"], sel["oracle"], sel["complement"], "--json", os.path.join(d, "analyze.json")]

        def work():
            quiet(analyze.main, argv)
        measure("analyze", work, results)
    else:
        raise SystemExit(f"bench_scale.py: unknown --stage {a.stage}")
    print(json.dumps(results))


# ----------------------------------------------------------------------------- the oracle at GPT-4o-like latency

BACKOFF = 0.75  # select.py's first retry waits base 1 s x U(0.5, 1) (oracle.backoff_delay): 0.75 s on average


def makespan(faulted, c, latency):
    """Seconds for c slots taking the items in order (oracle.run_pool's threads) when an item takes one latency,
    or two and a backoff when its first answer is a 429: the run's ideal, without any overhead."""
    import heapq
    slots = [0.0] * c
    for f in faulted:
        heapq.heapreplace(slots, slots[0] + latency * (2 if f else 1) + (BACKOFF if f else 0))
    return max(slots)


def oracle_latency(a, work):
    """select.py (a process of its own, as run for real) on rounds x C trajectories per C, at --latency with 429s.
    The efficiency of a run is its ideal (makespan) over its measured request loop; a full pass is projected as the
    ideal of N trajectories (N x mean item time / C, the tail negligible) over that efficiency."""
    import hashlib
    from envs import protocol
    pool = text_pool()
    instructions = {e: protocol.INSTRUCTION.get(e, text_pool(1, 60)[:350]) for e in PROFILE}
    mix = [e for e, k in counts_at(1000).items() for _ in range(k)]
    random.Random(0).shuffle(mix)
    out = []
    for c in a.concurrency:
        n, seen, recs = a.rounds * c, {}, []
        for e in (mix * (n // len(mix) + 1))[:n]:
            seen[e] = seen.get(e, -1) + 1
            recs.append(make_record(e, seen[e], pool, instructions))
        inp, outp = os.path.join(work, f"latency_{c}.jsonl"), os.path.join(work, f"latency_{c}_out.jsonl")
        with open(inp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
        server, url = stand_in(a.latency, "429", a.fault_every)
        try:
            run = subprocess.run([sys.executable, os.path.join(ROOT, "select.py"), "--input", inp, "--output", outp,
                                  "--base-url", url, "--concurrency", str(c)], cwd=ROOT, capture_output=True,
                                 text=True, env={**os.environ, "OPENAI_API_KEY": "sk-bench-placeholder"})
            stats = json.load(urllib.request.urlopen(url.rsplit("/v1", 1)[0] + "/stats"))
        finally:
            server.terminate()
            server.wait()
        if run.returncode:
            sys.exit(f"bench_scale.py: select.py at concurrency {c} failed:\n{run.stdout[-1500:]}{run.stderr[-1500:]}")
        loop = float(run.stdout.rsplit("trajectories in ", 1)[1].split("s", 1)[0])
        # which items got a 429: the stand-in's own rule (OracleServer.fault_for) on the first turn's text
        faulted = [int(hashlib.sha256(r["conversations"][0]["value"].encode()).hexdigest(), 16) % a.fault_every == 0
                   for r in recs]
        share = stats["requests"] / n - 1  # extra requests per trajectory: the 429s
        assert stats["requests"] == n + sum(faulted), (stats["requests"], n, sum(faulted))
        ideal = makespan(faulted, c, a.latency)
        item = a.latency * (1 + share) + BACKOFF * share  # mean seconds a trajectory holds a slot
        held_in = FULL - PROFILE["sqlgym"][0]
        out.append({"concurrency": c, "n": n, "requests": stats["requests"], "seconds": loop, "ideal_s": ideal,
                    "efficiency": ideal / loop, "retry_share": share,
                    "ideal_h": {N: N * item / c / 3600 for N in (FULL, held_in)},
                    "projected_h": {N: N * item / c / (ideal / loop) / 3600 for N in (FULL, held_in)}})
        print(f"oracle at {a.latency:g} s, {c} in flight: {n} trajectories, {stats['requests']} requests "
              f"({share:.0%} 429s) in {loop:.1f} s; ideal {ideal:.1f} s: efficiency {ideal / loop:.3f}", flush=True)
    return out


# ----------------------------------------------------------------------------- the run

STAGES = ["read", "data", "random", "oracle", "complement", "tokenize", "analyze"]


def run_stage(stage, d, n, tokenizer):
    """One stage in a process of its own (its stderr to D/STAGE.log): its result rows."""
    for name in {"random": ["random.jsonl"], "oracle": ["oracle.jsonl"], "complement": ["complement.jsonl"],
                 "data": ["data"]}.get(stage, []):  # a rerun starts afresh (select.py would resume, the data
        path = os.path.join(d, name)                 # stage keep its file)
        for p in (path, path + ".config.json", path + ".errors.jsonl"):
            if os.path.isdir(p):
                shutil.rmtree(p)
            elif os.path.exists(p):
                os.remove(p)
    log = os.path.join(d, f"{stage}.log")
    with open(log, "w") as err:
        run = subprocess.run([sys.executable, os.path.abspath(__file__), "--stage", stage, "--dir", d, "--tokenizer",
                              tokenizer], cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
    if run.returncode:
        sys.exit(f"bench_scale.py: stage {stage} at N = {n} failed (exit {run.returncode}): {open(log).read()[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def cpu_model():
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")


def growth(x1, x2, n1, n2):
    return math.log(x2 / x1) / math.log(n2 / n1) if x1 > 0 and x2 > 0 else None


def main():
    p = argparse.ArgumentParser(description="every CPU-side stage at growing corpus sizes: time, memory, growth")
    p.add_argument("--sizes", nargs="+", default=["1000", "4000", "full"],
                   help=f"corpus sizes in trajectories ('full': AgentTraj-L's {FULL:,})")
    p.add_argument("--stages", nargs="+", default=STAGES, choices=STAGES, help="stages to measure (in this order; "
                   "each needs the outputs of those before it: data <- read, random/oracle <- data, ...)")
    p.add_argument("--tokenizer", default=os.path.join(ROOT, "cache", "smollm2", "hf"),
                   help="model folder whose tokenizer and chat template train.py would use (default: SmolLM2's)")
    p.add_argument("--latency", type=float, default=10.0, help="seconds the stand-in takes per answer (GPT-4o-like)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[16, 64], help="select.py --concurrency values")
    p.add_argument("--rounds", type=int, default=5, help="trajectories per latency run = rounds x concurrency")
    p.add_argument("--fault-every", type=int, default=10, help="a 429 on the first attempt of ~1 in N items")
    p.add_argument("--no-latency", action="store_true", help="skip the oracle-at-latency runs")
    p.add_argument("--repeat", type=int, default=1, help="run each stage this many times and keep the fastest "
                   "(timings on a shared machine)")
    p.add_argument("--work", default=None, help="working folder (default: a temporary one, removed at the end)")
    p.add_argument("--json", default=None, help="also write every number to this file")
    p.add_argument("--stage", help=argparse.SUPPRESS)  # internal: run one stage in this process
    p.add_argument("--dir", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.stage:
        return stage_main(a)
    sizes = sorted({FULL if s == "full" else int(s) for s in a.sizes})
    stages = [s for s in STAGES if s in a.stages]
    work = a.work or tempfile.mkdtemp(prefix="bench_scale_")
    os.makedirs(work, exist_ok=True)
    load0, t_start = os.getloadavg(), time.time()
    rows = {}  # stage -> {n: result}
    try:
        for n in sizes:
            d = os.path.join(work, f"n{n}")
            shutil.rmtree(d, ignore_errors=True)
            t0 = time.time()
            write_corpus(os.path.join(d, "corpus"), n)
            print(f"N = {n}: corpus written in {time.time() - t0:.1f} s", flush=True)
            for s in stages:
                for _ in range(a.repeat):  # a stage rewrites its outputs: each run starts from the same inputs
                    for r in run_stage(s, d, n, a.tokenizer):
                        best = rows.setdefault(r["stage"], {}).get(n)
                        if best is None or r["seconds"] < best["seconds"]:
                            rows[r["stage"]][n] = r
                        print(f"  {r['stage']:14} {r['seconds']:8.2f} s  {r['peak_mib']:8.1f} MiB peak  "
                              f"+{r['added_mib']:.1f} MiB", flush=True)
            for f in os.listdir(d):  # keep the logs only: the full-size files are ~0.5 GB
                path = os.path.join(d, f)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif not f.endswith(".log"):
                    os.remove(path)
        latency = [] if a.no_latency else oracle_latency(a, work)
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report(a, sizes, rows, latency, load0, time.time() - t_start)


def report(a, sizes, rows, latency, load0, elapsed):
    print(f"\n{len(sizes)} sizes in {elapsed / 60:.1f} min on {os.cpu_count()} x {cpu_model()}; load average "
          f"{load0[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; fastest of {a.repeat} per stage")
    head = (f"{'stage':14} {'N':>6} {'seconds':>8} {'CPU s':>7} {'peak MiB':>8} {'+MiB':>7} {'ms/1k':>7} "
            f"{'exp t':>6} {'exp cpu':>7} {'exp mem':>7}")
    print(head + "\n" + "-" * len(head))
    ratios, flagged = {}, []
    for stage, by_n in rows.items():
        prev = None
        for n in sizes:
            r = by_n.get(n)
            if r is None:
                continue
            et = ec = em = None
            if prev is not None:
                et = growth(prev[1]["seconds"], r["seconds"], prev[0], n)
                ec = growth(prev[1]["cpu"], r["cpu"], prev[0], n) if min(prev[1]["cpu"], r["cpu"]) >= 0.05 else None
                em = growth(prev[1]["added_mib"], r["added_mib"], prev[0], n) if min(
                    prev[1]["added_mib"], r["added_mib"]) >= 2 else None  # below 2 MiB: noise
            # superlinear: wall and CPU time both (load inflates the wall time alone; under 0.1 s both are noise),
            # or the memory
            timed = prev is not None and min(prev[1]["seconds"], r["seconds"]) >= 0.1
            worse = timed and (et or 0) > 1.2 and (ec is None or ec > 1.2) or (em or 0) > 1.2
            mark = "!" if n == sizes[-1] and worse else " "
            if mark == "!":
                flagged.append(stage)
            fmt = [("-" if x is None else f"{x:.2f}") for x in (et, ec, em)]
            print(f"{stage:14} {n:6d} {r['seconds']:8.2f} {r['cpu']:7.2f} {r['peak_mib']:8.1f} {r['added_mib']:7.1f} "
                  f"{1e6 * r['seconds'] / n:7.1f} {fmt[0]:>6} {fmt[1]:>7} {fmt[2]:>7}{mark}")
            if ec is not None and n == sizes[-1]:
                ratios[f"growth exponent of {stage}'s CPU time, N {prev[0]}-{n}"] = round(ec, 3)
            prev = (n, r)
    top = sizes[-1]
    t = rows.get("train batches", {}).get(top)
    if t:
        tok = rows["tokenize"][top]
        print(f"\ntrain.py's micro-batches at N = {top} ({tok['tokenizer']}; {tok['tokens']:,} tokens, "
              f"{tok['truncated']} trajectories cut at 8192; batch 128, <= 4 rows x <= 16384 tokens): padding "
              f"{t['padding_random']:.1%} of the tokens computed (random 30 %), {t['padding_complete']:.1%} (all "
              f"steps), {t['padding_complete_8192']:.1%} at 8192-token micro-batches; largest micro-batch "
              f"{t['largest'][0]} x {t['largest'][1]}; perplexity.py's batches (16384 tokens): "
              f"{rows['ppl batches'][top]['padding']:.1%}. train.py's kept examples and the tokeniser's "
              f"work: {tok['added_mib'] * 2**20 / tok['tokens']:.0f} bytes per token of the rendered trajectories")
        worst = max(t["padding_random"], t["padding_complete"])
        if worst > 0.10:
            print(f"padding above 10 %: packing the micro-batches (rows laid end to end, attention kept within "
                  f"each row) would compute {worst:.0%} fewer tokens: up to {1 / (1 - worst):.2f}x the tokens/s")
        ratios["train.py padding share, random 30 %"] = round(t["padding_random"], 4)
        ratios["train.py padding share, all steps"] = round(t["padding_complete"], 4)
    for x in latency:
        held_in = FULL - PROFILE["sqlgym"][0]
        print(f"oracle, {x['concurrency']} in flight at {a.latency:g} s/answer, {x['retry_share']:.0%} 429s: "
              f"{x['n']} trajectories in {x['seconds']:.1f} s, {x['efficiency']:.3f} of the ideal {x['ideal_s']:.1f} s "
              f"-> a full pass of {FULL:,}: {x['projected_h'][FULL]:.2f} h (ideal {x['ideal_h'][FULL]:.2f} h); "
              f"the {held_in:,} held-in: {x['projected_h'][held_in]:.2f} h")
        ratios[f"oracle full pass hours at {x['concurrency']} in flight"] = round(x["projected_h"][FULL], 3)
    print("growth above 1.2 between the two largest sizes (wall and CPU time, or memory; marked !): " +
          (", ".join(flagged) if flagged else "none"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"sizes": sizes, "rows": {s: {str(n): r for n, r in b.items()} for s, b in rows.items()},
                       "latency": latency, "load_average_start": load0, "elapsed_s": elapsed}, f, indent=1)
    print(json.dumps({"bench": "scale", "ratios": ratios,
                      "goals": {k: "<= 1 (linear)" for k in ratios if k.startswith("growth")}}))


if __name__ == "__main__":
    main()
