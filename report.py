"""The report: Tables 1, 2, 3 and 6 of the paper from evaluate.py's result files, with episode counts, 95 %
intervals and bar charts on a fixed 0-100 axis.

    python report.py results/*.jsonl --report-png results/table1.png
    python evaluate.py --report results/*.jsonl --report-png results/table1.png      # the same, kept
    python report.py results/*.jsonl --held-out maze,wordle    # envs the run did not train on move to held-out

Rows are the results' labels. What a row is (method, ratio) is its label's when the label follows evaluate.py's
--label convention (base, complete, critical@M, noncritical@M, random@M, perplexity@M, value@M), else the
`selection` its results carry (evaluate.py copies train.py's selection.json from the model folder: the training
records' `selection.method`, ratio and selector model). The paper's selectors write `oracle` (ATLaS: the Critical
rows), `complement` (Non-critical), `random`, `perplexity`, `value`; any other method is a new selector and gets
rows of its own in Tables 1 and 3. Columns, their split (held-in / held-out) and how each is scored are the
environments' own facts (envs/: split, column, score, scale, lowest). Success rates have Wilson intervals, mean
rewards and progress rates (x scale) mean +- 1.96 s/sqrt(n), the averages intervals from their columns'; every
interval is cut to the scores that can occur.

Shared with evaluate.py, whose --report calls report() here; report.py imports no stage.
"""
import argparse
import glob
import json
import math
import os
import re
from collections import defaultdict

from envs import REGISTRY, env_class, names
from envs.base import Env
from trajectory import RecordError

HELD_IN, HELD_OUT = names("held-in"), names("held-out")
# the paper's rows; a selection.method outside them is a new selector (its own rows in Tables 1 and 3)
METHODS = ("base", "complete", "critical", "noncritical", "random", "perplexity", "value")
ROW_OF_METHOD = {"oracle": "critical", "complement": "noncritical"}  # selection.method -> the paper's row
Z95 = 1.959963984540054


def get_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", nargs="+", metavar="RESULTS", help="result files of evaluate.py (globs ok)")
    add_report_flags(ap)
    return ap.parse_args(argv)


def add_report_flags(ap):
    """--report-png and --held-out (evaluate.py --report takes the same)."""
    ap.add_argument("--report-png", default="results/table1.png", help="where the report saves the Table-1 chart "
                    "(Tables 3 and 6 go beside it as <name>_table3.png, <name>_table6.png)")
    ap.add_argument("--held-out", default=None, help="comma-separated envs the run did not train on, shown under "
                    "held-out next to the paper's academia, sheet, jericho, pddl (the split is then not the "
                    "paper's: its AVG is marked AVG*)")


# ----------------------------------------------------------------------------- the environments' facts

def facts(env):
    """The class that declares env's facts (an env outside the registry is scored as a success rate)."""
    return env_class(env) if env in REGISTRY else Env


def column(env):
    return facts(env).column if env in REGISTRY else env


def episode_id(item_id, start):
    return f"{item_id}@{'scratch' if start is None else start}"


# ----------------------------------------------------------------------------- reading results

def parse_label(label):
    """(method, ratio) of a label that follows the --label convention, else None. complete has ratio 1.0."""
    m = re.fullmatch(r"([a-z]+)(?:@(\d*\.?\d+))?", str(label))
    if not m or m.group(1) not in METHODS:
        return None
    method, ratio = m.group(1), float(m.group(2)) if m.group(2) else None
    if method == "complete":
        return (method, 1.0) if ratio in (None, 1.0) else None
    if method == "base":
        return (method, None) if ratio is None else None
    if ratio is None:  # the oracle-free selectors may go without one (value_estimate selects by a threshold)
        return (method, None) if method in ("perplexity", "value") else None
    return (method, ratio) if 0 < ratio <= 1 else None


def load_results(patterns):
    """label -> env -> rows. Every line must be a result object; an episode counted twice (the same item_id, and
    with --from-critical the same start, under one label) is refused, naming both places."""
    by = defaultdict(lambda: defaultdict(list))
    selected = {}  # label -> (its selection_key, where first seen)
    files = sorted({p for pat in patterns for p in (glob.glob(pat) or [pat])})
    seen = {}
    for path in files:
        if os.path.isdir(path):
            raise RecordError(f"{path}: is a folder; give result files (globs ok)")
        if not os.path.exists(path):
            raise RecordError(f"{path}: no such file")
        try:
            lines = open(path, encoding="utf-8").read().splitlines()
        except UnicodeDecodeError as e:
            raise RecordError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}: line {n}"
            try:
                r = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as e:
                raise RecordError(f"{where}: not valid JSON ({getattr(e, 'msg', 'nested too deeply')})") from None
            if not isinstance(r, dict):
                raise RecordError(f"{where}: not a result line (a {type(r).__name__}; results are JSONL, one "
                                  f"object per episode, as evaluate.py writes them)")
            for key in ("item_id", "env"):
                if not isinstance(r.get(key), (str, int)) or isinstance(r.get(key), bool):
                    raise RecordError(f"{where}: not a result line ('{key}' missing or not a string)")
            if r.get("success") not in (0, 1) or isinstance(r.get("success"), float):
                raise RecordError(f"{where}: 'success' must be 0 or 1, got {r.get('success')!r}")
            for key in ("reward", "progress"):
                v = r.get(key, 0.0 if key == "progress" else None)
                if key == "progress" and v is None:
                    continue
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise RecordError(f"{where}: '{key}' must be a number, got {v!r}")
            label = str(r.get("label") or os.path.splitext(os.path.basename(path))[0])
            episode = (label, r["env"], r["item_id"], "start" in r, r.get("start"))
            if episode in seen:
                name = episode_id(r["item_id"], r.get("start")) if "start" in r else r["item_id"]
                raise RecordError(f"{where}: episode {name!r} of label {label!r} is already at {seen[episode]}: "
                                  f"each episode may count once")
            seen[episode] = where
            sel = selection_key(r.get("selection"), where)
            if label in selected and selected[label][0] != sel:
                raise RecordError(f"{where}: label {label!r} has the selection {sel} here and "
                                  f"{selected[label][0]} at {selected[label][1]}: one row, one selection")
            selected.setdefault(label, (sel, where))
            by[label][r["env"]].append(r)
    return by


def selection_key(sel, where):
    """(method, ratio, selector model) of a result line's `selection` (None without one)."""
    if sel is None:
        return None
    if not isinstance(sel, dict) or not isinstance(sel.get("method"), str):
        raise RecordError(f"{where}: 'selection' must be an object with a 'method', got {sel!r}")
    ratio = sel.get("ratio")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float))):
        raise RecordError(f"{where}: 'selection.ratio' must be a number, got {ratio!r}")
    return sel["method"], ratio, sel.get("model")


def row_of(label, envs):
    """(method, ratio) of a row: its label when that follows the --label convention (an explicit name wins), else
    the selection its results carry (oracle -> critical, complement -> noncritical, a new selector by its own
    name); None when neither says."""
    parsed = parse_label(label)
    if parsed is not None:
        return parsed
    sel = next((selection_key(r.get("selection"), label) for rows in envs.values() for r in rows), None)
    if sel is None:
        return None
    method, ratio = ROW_OF_METHOD.get(sel[0], sel[0]), sel[1]
    return (method, 1.0) if method == "complete" else (method, None if ratio is None else float(ratio))


# ----------------------------------------------------------------------------- numbers

def wilson(k, n, z=Z95):
    """Wilson score interval of a success rate k/n, as percentages."""
    if n == 0:
        return None
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(0.0, mid - half), 100 * min(1.0, mid + half)


def value(env, r):
    return r["progress"] if facts(env).score == "progress" and r.get("progress") is not None else r["reward"]


def cell(env, rows):
    """The Table-1 number of one env on 0..100 with its 95 % interval: success rate with Wilson's interval, or
    (dense / progress envs) the mean with a normal-approximation interval (mean +- 1.96 s / sqrt(n))."""
    n = len(rows)
    if facts(env).score != "rate":
        xs = [facts(env).scale * value(env, r) for r in rows]
        mean = sum(xs) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
        lo = facts(env).lowest
        ci = clip((mean - Z95 * sd / math.sqrt(n), mean + Z95 * sd / math.sqrt(n)), lo) if sd is not None else None
        return {"score": mean, "ci": ci, "n": n, "kind": "mean", "lo": lo}
    k = sum(int(r["success"]) for r in rows)
    return {"score": 100.0 * k / n, "ci": wilson(k, n), "n": n, "kind": "rate", "lo": 0.0}


def clip(ci, lo):
    """A normal-approximation interval cut to the scores that can occur (lo..100): a mean of 0..100 rewards has no
    interval below 0."""
    return max(lo, ci[0]), min(100.0, ci[1])


def average(cells):
    """Mean of cells with a normal-approximation interval from the cells' own (independent) intervals."""
    score = sum(c["score"] for c in cells) / len(cells)
    lo = min(c["lo"] for c in cells)
    if any(c["ci"] is None for c in cells):
        ci = None
    else:
        se = math.sqrt(sum(((c["ci"][1] - c["ci"][0]) / (2 * Z95)) ** 2 for c in cells)) / len(cells)
        ci = clip((score - Z95 * se, score + Z95 * se), lo)
    return {"score": score, "ci": ci, "n": sum(c["n"] for c in cells), "kind": "avg", "lo": lo}


def splits(held_out_arg):
    """(held-in envs, held-out envs, paper's split?): --held-out moves envs the run did not train on from held-in
    to held-out; the paper's held-out envs stay held-out."""
    extra = [e.strip() for e in held_out_arg.split(",") if e.strip()] if held_out_arg else []
    held_out = HELD_OUT + [e for e in extra if e not in HELD_OUT]
    held_in = [e for e in HELD_IN if e not in extra]
    return held_in, held_out, held_in == HELD_IN


def summarize(envs, held_in, held_out):
    """Per-env cells plus, per split, the AVG (only when every column of the split is present) or the partial
    average with how many of the split's columns it covers."""
    s = {env: cell(env, rows) for env, rows in envs.items()}
    for group, name in ((held_in, "in"), (held_out, "out")):
        present = [s[e] for e in group if e in s]
        s[f"avg_{name}"] = average(present) if present and len(present) == len(group) else None
        s[f"part_{name}"] = ({**average(present), "of": (len(present), len(group))}
                             if present and len(present) < len(group) else None)
    return s


def fmt(c, what="score"):
    if c is None:
        return "-"
    if what == "score":
        return f"{c['score']:.2f}"
    if what == "n":
        return str(c["n"])
    return f"{c['ci'][0]:.1f}-{c['ci'][1]:.1f}" if c.get("ci") else "n/a"


def part(c):
    return f"{c['score']:.2f} ({c['of'][0]}/{c['of'][1]})" if c else ""


def print_wide(title, rows, held_in, held_out, paper):
    """Tables 1 and 2: env columns grouped held-in / held-out, three blocks (score, episodes, 95 % interval)."""
    cols_in = [e for e in held_in if any(e in s for _, s in rows)]
    cols_out = [e for e in held_out if any(e in s for _, s in rows)]
    other = sorted({e for _, s in rows for e in s if not e.startswith(("avg_", "part_"))} - set(held_in + held_out))
    part_in = ["part_in"] * any(s["part_in"] for _, s in rows)
    part_out = ["part_out"] * any(s["part_out"] for _, s in rows)
    avg = "AVG" if paper else "AVG*"
    groups = [("held-in", cols_in + ["avg_in"] + part_in), ("held-out", cols_out + ["avg_out"] + part_out)]
    groups += [("other", other)] * bool(other)
    cols = [c for _, g in groups for c in g]
    head = [avg if c.startswith("avg_") else "AVG k/N" if c.startswith("part_") else column(c) for c in cols]
    width, w = max(14, max(len(label) for label, _ in rows) + 4), 14
    print(f"\n{title}")
    print(f"{'':{width}}" + "".join(f"{name:^{w * len(g)}}" for name, g in groups))
    print(f"{'':{width}}" + "".join(f"{h:>{w}}" for h in head))
    for what, name in (("score", "score (0-100)"), ("n", "episodes"), ("ci", "95 % interval")):
        print(name)
        for label, s in rows:
            cells = [(part(s[c]) if what == "score" else "") if c.startswith("part_") else fmt(s.get(c), what)
                     for c in cols]
            print(f"  {label:{width - 2}}" + "".join(f"{x:>{w}}" for x in cells))
    missing = [column(e) for e in held_in + held_out if e not in cols_in + cols_out]
    print(f"{avg} only over every column of its split (held-in {len(held_in)}, held-out {len(held_out)} columns); "
          f"'AVG k/N' averages the k of N columns present and is not comparable to the paper's AVG."
          + (f" No results for {', '.join(missing)}." if missing else ""))
    if not paper:
        print("AVG*: --held-out changed the paper's split (held-in: the paper's 10 envs minus the named ones; "
              "held-out: the paper's 4 plus them).")


def table6(by):
    """{label: {env: {scratch, critical (mean over restarts), best (per-task best), tasks, replay_only}}}"""
    out = {}
    for label, envs in by.items():
        for env, rows in envs.items():
            rows = [r for r in rows if "start" in r]
            if not rows:
                continue
            scratch = [r for r in rows if r["start"] is None]
            restarts = [r for r in rows if r["start"] is not None]
            per_task = defaultdict(list)
            for r in restarts:
                per_task[r["item_id"]].append(r)
            best = [max(rs, key=lambda r: (value(env, r), r["success"])) for rs in per_task.values()]
            out.setdefault(label, {})[env] = {
                "scratch": cell(env, scratch) if scratch else None,
                "critical": cell(env, restarts) if restarts else None,
                "best": cell(env, best) if best else None,
                "tasks": len({r["item_id"] for r in rows}),
                "replay_only": sum(r.get("rounds", 0) == r.get("replayed", -1) for r in restarts)}
    return out


def report(args):
    by = load_results(args.report)
    if not by:
        raise RecordError("no results in " + " ".join(args.report))
    held_in, held_out, paper = splits(args.held_out)
    # Tables 1-3 use the ordinary evaluation episodes; Table 6 the --from-critical ones (they carry "start")
    plain = {label: {env: [r for r in rows if "start" not in r] for env, rows in envs.items()}
             for label, envs in by.items()}
    plain = {label: {e: rs for e, rs in envs.items() if rs} for label, envs in plain.items()}
    plain = {label: envs for label, envs in plain.items() if envs}
    t1 = {label: summarize(envs, held_in, held_out) for label, envs in plain.items()}
    out = {"table1": t1}
    if t1:
        print_wide("Table 1: held-in and held-out environments", list(t1.items()), held_in, held_out, paper)
        print("Babyai, Sciworld and Sheet are mean rewards (x100 for 0..1 rewards), PDDL and Jericho progress rates "
              "x100, the others success rates, as in AgentGym and the paper. Intervals: Wilson for success rates, "
              "mean +- 1.96 s/sqrt(n) for mean rewards, and from the columns' intervals for the averages, "
              "both cut to the scores that can occur.")
    by_method, outside = labels_by_method(plain)
    rows2 = [(label, t1[label]) for label in table2_labels(by_method)]
    out["table2"] = dict(rows2)
    if rows2:
        print_wide("Table 2: critical vs non-critical steps vs complete trajectories", rows2, held_in, held_out, paper)
    rows3 = table3_rows(by_method)
    out["table3"] = {label: {"in": t1[label]["avg_in"], "out": t1[label]["avg_out"],
                             "part_in": t1[label]["part_in"], "part_out": t1[label]["part_out"]}
                     for _, _, label in rows3}
    if rows3:
        print_table3(rows3, out["table3"], paper)
    if outside:
        print(f"\nlabels outside the --label convention (Table 1 only): {', '.join(outside)}")
    t6 = table6(by)
    out["table6"] = t6
    if t6:
        print_table6(t6)
    out["charts"] = charts(args.report_png, t1, rows3, t6, held_in, held_out, out["table3"])
    return out


def labels_by_method(by):
    """({method: {ratio: label}} of the rows whose label or selection says what they are (row_of), [the labels of
    the others])."""
    parsed = {label: row_of(label, envs) for label, envs in by.items()}
    by_method = defaultdict(dict)
    for label, p in parsed.items():
        if p is not None:
            by_method[p[0]][p[1]] = label
    return by_method, [label for label, p in parsed.items() if p is None]


def table2_labels(by_method):
    """Table 2: non-critical vs complete vs critical, at the non-critical runs' ratios (else every critical ratio)."""
    ratios = sorted(by_method["noncritical"]) or sorted(by_method["critical"])
    return ([by_method["noncritical"][m] for m in ratios if m in by_method["noncritical"]]
            + [by_method["complete"][m] for m in [1.0] if m in by_method["complete"]]
            + [by_method["critical"][m] for m in ratios if m in by_method["critical"]])


def table3_rows(by_method):
    """Table 3: [(data, steps, label)] for complete, then random@m, each new selector's rows (a method none of the
    paper's, by name) and critical@m, from the largest m down."""
    new = sorted(m for m in by_method if m not in METHODS)
    return ([("Complete", "100%", by_method["complete"][m]) for m in [1.0] if m in by_method["complete"]]
            + [("Random", f"{m:.0%}", by_method["random"][m]) for m in sorted(by_method["random"], reverse=True)]
            + [(name.title(), f"{m:.0%}", by_method[name][m]) for name in new
               for m in sorted((m for m in by_method[name] if m is not None), reverse=True)]
            + [("Critical", f"{m:.0%}", by_method["critical"][m]) for m in sorted(by_method["critical"],
                                                                                 reverse=True)])


def print_table3(rows3, t3, paper):
    """Table 3: the held-in and held-out averages of each row, with the partial averages where a split is short."""
    avg = "AVG" if paper else "AVG*"
    print(f"\nTable 3: random vs critical steps at each ratio ({avg} of the split's columns, 95 % interval, "
          f"episodes)")
    print(f"{'Data':10}{'Steps':>6}  {'held-in ' + avg:>30}  {'held-out ' + avg:>30}  partial averages")
    for data, steps, label in rows3:
        s = t3[label]
        cells = [f"{c['score']:.2f} [{fmt(c, 'ci')}] n={c['n']}" if c else "-" for c in (s["in"], s["out"])]
        partial = "; ".join(f"{g} {part(s[k])}" for g, k in (("held-in", "part_in"), ("held-out", "part_out"))
                            if s[k])
        print(f"{data:10}{steps:>6}  {cells[0]:>30}  {cells[1]:>30}  {partial}")


def print_table6(t6):
    print("\nTable 6: from scratch vs from a critical step (the expert's turns through critical step c replayed, "
          "then the policy)")
    print("'from critical step' is the mean over all restart episodes (each critical step of each task counts "
          "once); 'per-task best' takes each task's best restart (solved if any restart solves it).")
    print(f"{'label':16}{'Tasks':10}{'From scratch':>28}{'From critical step':>28}{'per-task best':>28}"
          f"{'ended in replay':>17}")
    for label, envs in t6.items():
        for env, c in envs.items():
            cells = [f"{x['score']:.2f} [{fmt(x, 'ci')}] n={x['n']}" if x else "-"
                     for x in (c["scratch"], c["critical"], c["best"])]
            print(f"{label:16}{column(env):10}" + "".join(f"{x:>28}" for x in cells)
                  + f"{c['replay_only']:>17}")
    print("n: episodes (from scratch and per-task best: one per task). 'ended in replay': restarts whose replayed "
          "expert turns already finished the episode (the policy took no turn).")


# ----------------------------------------------------------------------------- charts

def bars(path, groups, series, title):
    """Grouped bars on a fixed 0-100 axis; series = [(name, [cell or None per group])], intervals as error bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups) + 2), 4))
    w = 0.8 / max(1, len(series))
    for k, (name, cells) in enumerate(series):
        xs = [i + k * w for i in range(len(groups))]
        ys = [c["score"] if c else 0.0 for c in cells]
        err = [[max(0.0, y - c["ci"][0]) if c and c["ci"] else 0.0 for y, c in zip(ys, cells)],
               [max(0.0, c["ci"][1] - y) if c and c["ci"] else 0.0 for y, c in zip(ys, cells)]]
        ax.bar(xs, ys, w, yerr=err, capsize=3, label=name)
    ax.set_xticks([i + w * (len(series) - 1) / 2 for i in range(len(groups))])
    ax.set_xticklabels(groups, rotation=30)
    ax.set_ylim(0, 100)
    ax.set_ylabel("score (0-100), 95 % interval")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    ylim = ax.get_ylim()
    plt.close(fig)
    print(f"chart: {path}")
    return ylim


def charts(png, t1, rows3, t6, held_in, held_out, t3):
    """Bar charts of Tables 1, 3 and 6; returns {path: y limits}."""
    stem, ext, out = *os.path.splitext(png), {}
    if t1:
        envs = [e for e in held_in + held_out if any(e in s for s in t1.values())]
        envs += sorted({e for s in t1.values() for e in s if not e.startswith(("avg_", "part_"))} - set(envs))
        out[png] = bars(png, [column(e) + ("*" if e in held_out else "") for e in envs],
             [(label, [s.get(e) for e in envs]) for label, s in t1.items()], "held-in and held-out (*) environments")
    if rows3:
        out[f"{stem}_table3{ext}"] = bars(f"{stem}_table3{ext}", [f"{d} {s}" for d, s, _ in rows3],
             [("held-in AVG", [t3[label]["in"] for _, _, label in rows3]),
              ("held-out AVG", [t3[label]["out"] for _, _, label in rows3])], "Table 3: random vs critical steps")
    if t6:
        keys = [(label, env) for label, envs in t6.items() for env in envs]
        out[f"{stem}_table6{ext}"] = bars(f"{stem}_table6{ext}", [f"{column(e)} ({label})" for label, e in keys],
             [(name, [t6[label][e][k] for label, e in keys]) for name, k in
              (("from scratch", "scratch"), ("from critical step (mean)", "critical"), ("per-task best", "best"))],
             "Table 6: from scratch vs from a critical step")
    return out


def main(argv=None):
    args = get_args(argv)
    try:
        return report(args)
    except (RecordError, OSError, ValueError) as e:
        raise SystemExit(f"report.py: {e}") from None


if __name__ == "__main__":
    main()
