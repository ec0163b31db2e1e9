"""The report: Tables 1-7 and Figure 2 of the paper from evaluate.py's result files, with episode counts, 95 %
intervals, bar charts on a fixed 0-100 axis, and the paper's own numbers (paper_numbers.py) beside ours.

    python report.py results/*.jsonl --report-png results/table1.png
    python evaluate.py --report results/*.jsonl --report-png results/table1.png      # the same, kept
    python report.py results/*.jsonl --held-out maze,wordle    # envs the run did not train on move to held-out
    python report.py results/*.jsonl --backbone Llama-3.1-8B-Instruct    # the backbone of Tables 1, 2, 3 and 6

A row is a label (evaluate.py's --label, else the file's name) of one backbone (the result line's "backbone", else
its selection's) and one scope: a model trained on one env (selection.train_envs of length 1) and evaluated on it
is single-task and makes Tables 4 and 5 (its episodes on other envs are counted, in no table) when its backbone
also has models trained on several envs; the others are multi-task (in a run whose every model trained on one
env, as the demo's, all are). The main backbone (--backbone, else the one with the most
multi-task rows, ties the first by name) makes Tables 1, 2, 3 and 6; a line without a backbone (older files, the
openai and expert policies) belongs to it. Every backbone makes a section of Table 7 (complete, random@m,
critical@m) and its bars in Figure 2 (ATLaS vs complete). Rows of one label with another backbone, scope or
selector model stay apart.

What a row is (method, ratio) is its label's when the label follows evaluate.py's --label convention (base,
complete, critical@M, noncritical@M, random@M, perplexity@M, value@M), else the `selection` its results carry
(evaluate.py copies train.py's selection.json from the model folder: the training records' `selection.method`,
ratio and selector model). The paper's selectors write `oracle` (ATLaS: the Critical rows), `complement`
(Non-critical), `random`, `perplexity`, `value`; any other method is a new selector and gets rows of its own in
Tables 1 and 3. Columns, their split (held-in / held-out) and how each is scored are the environments' own facts
(envs/: split, column, score, scale, lowest). Success rates have Wilson intervals, mean rewards and progress rates
(x scale) mean +- 1.96 s/sqrt(n), the averages intervals from their columns'; every interval is cut to the scores
that can occur. The paper's numbers for the same row print under ours ("paper") with ours - paper; a backbone is
the paper's by its name (llama-3.1-8b, mistral-7b, qwen2.5-7b); a main backbone of another name is compared with
the paper's Llama-3.1-8B-Instruct, marked so.

Shared with evaluate.py, whose --report calls report() here; report.py imports no stage. Reading the result files
is results.py, the cells, intervals and the paper's numbers scores.py, the bar charts charts.py.
"""
import argparse
import glob
import os
from collections import defaultdict

import paper_numbers as P
from charts import charts
from envs import REGISTRY
from results import METHODS, group_results, labels_by_method, load_results, row_names, row_of
from scores import (average, cell, column, env_order, minus, paper_averages, paper_backbone, paper_row,
                    paper_selector, splits, summarize, value)
from trajectory import RecordError


def get_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", nargs="+", metavar="RESULTS", help="result files of evaluate.py (globs ok)")
    add_report_flags(ap)
    return ap.parse_args(argv)


def add_report_flags(ap):
    """--report-png, --held-out and --backbone (evaluate.py --report takes the same)."""
    ap.add_argument("--report-png", default=None, help="where the report saves the Table-1 chart "
                    "(Tables 3 and 6 and Figure 2 go beside it as <name>_table3.png, <name>_table6.png, "
                    "<name>_figure2.png; default: table1.png beside the first results file)")
    ap.add_argument("--held-out", default=None, help="comma-separated envs the run did not train on, shown under "
                    "held-out next to the paper's academia, sheet, jericho, pddl (the split is then not the "
                    "paper's: its AVG is marked AVG*)")
    ap.add_argument("--backbone", default=None, help="the main backbone, whose rows make Tables 1, 2, 3 and 6 "
                    "(result lines without a backbone belong to it); default: the backbone with the most "
                    "multi-task rows")


def num(x, signed=False):
    return "-" if x is None else f"{x:+.2f}" if signed else f"{x:.2f}"


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


def print_wide(title, sections, held_in, held_out, paper_split):
    """Tables 1, 2 and 7: env columns grouped held-in / held-out, three blocks (score, episodes, 95 % interval).
    sections = [(heading or None, [(name, summary, (paper label, {column: value}) or None)])]: the score block
    prints the paper's row and ours - paper under each row that has one (the AVGs only on the paper's split)."""
    rows = [(label, s) for _, rs in sections for label, s, _ in rs]
    cols_in = [e for e in held_in if any(e in s for _, s in rows)]
    cols_out = [e for e in held_out if any(e in s for _, s in rows)]
    other = sorted({e for _, s in rows for e in s if not e.startswith(("avg_", "part_"))} - set(held_in + held_out))
    part_in = ["part_in"] * any(s["part_in"] for _, s in rows)
    part_out = ["part_out"] * any(s["part_out"] for _, s in rows)
    avg = "AVG" if paper_split else "AVG*"
    groups = [("held-in", cols_in + ["avg_in"] + part_in), ("held-out", cols_out + ["avg_out"] + part_out)]
    groups += [("other", other)] * bool(other)
    cols = [c for _, g in groups for c in g]
    head = [avg if c.startswith("avg_") else "AVG k/N" if c.startswith("part_") else column(c) for c in cols]
    papers = [pp for _, rs in sections for _, _, pp in rs if pp]
    width = max(14, max(len(label) for label, _ in rows) + 4, max((len(pp[0]) + 6 for pp in papers), default=0))
    w = 14
    print(f"\n{title}")
    print(f"{'':{width}}" + "".join(f"{name:^{w * len(g)}}" for name, g in groups))
    print(f"{'':{width}}" + "".join(f"{h:>{w}}" for h in head))
    for what, name in (("score", "score (0-100)"), ("n", "episodes"), ("ci", "95 % interval")):
        print(name)
        for heading, rs in sections:
            if heading:
                print(f" {heading}")
            for label, s, pp in rs:
                cells = [(part(s[c]) if what == "score" else "") if c.startswith("part_") else fmt(s.get(c), what)
                         for c in cols]
                print(f"  {label:{width - 2}}" + "".join(f"{x:>{w}}" for x in cells))
                if what == "score" and pp:
                    ours = ["" if c.startswith("part_") else num(pp[1].get(c)) for c in cols]
                    print(f"    {pp[0]:{width - 4}}" + "".join(f"{x:>{w}}" for x in ours))
                    diff = ["" if c.startswith("part_") or c.startswith("avg_") and not paper_split
                            else num(minus(s.get(c), pp[1].get(c)), signed=True) for c in cols]
                    print(f"    {'ours - paper':{width - 4}}" + "".join(f"{x:>{w}}" for x in diff))
    missing = [column(e) for e in held_in + held_out if e not in cols_in + cols_out]
    print(f"{avg} only over every column of its split (held-in {len(held_in)}, held-out {len(held_out)} columns); "
          f"'AVG k/N' averages the k of N columns present and is not comparable to the paper's AVG."
          + (f" No results for {', '.join(missing)}." if missing else ""))
    if papers:
        print("paper: the paper's numbers for the same row (paper_numbers.py), ours - paper where both exist, '-' "
              "where either is missing" + ("" if paper_split else "; no AVG difference on another split") + "."
              + (f" Marked 'paper ({P.LLAMA})': the backbone is none of the paper's, compared with its main one."
                 if any(pp[0] != "paper" for pp in papers) else ""))
    if not paper_split:
        print("AVG*: --held-out changed the paper's split (held-in: the paper's 10 envs minus the named ones; "
              "held-out: the paper's 4 plus them).")


def table6(by):
    """{name: {env: {scratch, critical (mean over restarts), best (per-task best), tasks, replay_only}}}"""
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
    lines = load_results(args.report)
    if not lines:
        raise RecordError("no results in " + " ".join(args.report))
    main, rows = group_results(lines, args.backbone)
    held_in, held_out, paper_split = splits(args.held_out)
    # Tables 1-5 and 7 use the ordinary evaluation episodes; Table 6 the --from-critical ones (they carry "start")
    plain = {key: {e: [r for r in rs if "start" not in r] for e, rs in envs.items()} for key, envs in rows.items()}
    plain = {key: {e: rs for e, rs in envs.items() if rs} for key, envs in plain.items()}
    multi = {key: envs for key, envs in plain.items() if envs and key[1] is None}
    single = {key: envs for key, envs in plain.items() if envs and key[1] is not None}
    paper_bb, paper_label = paper_backbone(main, main)
    out = {"backbone": main, "paper": {}}

    # ---- Tables 1, 2, 3: the main backbone's multi-task rows
    keys = [key for key in multi if key[0] == main]
    named = row_names(keys, main)
    t1 = {named[k]: summarize(multi[k], held_in, held_out) for k in keys}
    what = {named[k]: row_of(k[2], multi[k]) for k in keys}
    out["table1"] = t1
    paper1 = out["paper"]["table1"] = {n: paper_row(P.TABLE1, paper_bb, what[n]) for n in t1}
    on = f" (backbone {main})" if main else ""
    if t1:
        print_wide(f"Table 1: held-in and held-out environments{on}", [(None, [(n, s, (paper_label, paper1[n])
                   if paper1[n] else None) for n, s in t1.items()])], held_in, held_out, paper_split)
        print("Babyai, Sciworld and Sheet are mean rewards (x100 for 0..1 rewards), PDDL and Jericho progress rates "
              "x100, the others success rates, as in AgentGym and the paper. Intervals: Wilson for success rates, "
              "mean +- 1.96 s/sqrt(n) for mean rewards, and from the columns' intervals for the averages, "
              "both cut to the scores that can occur.")
    by_method, outside = labels_by_method(what)
    rows2 = table2_labels(by_method)
    out["table2"] = {n: t1[n] for n in rows2}
    paper2 = out["paper"]["table2"] = {n: paper_row(P.TABLE2, paper_bb, what[n]) for n in rows2}
    if rows2:
        print_wide(f"Table 2: critical vs non-critical steps vs complete trajectories{on}",
                   [(None, [(n, t1[n], (paper_label, paper2[n]) if paper2[n] else None) for n in rows2])],
                   held_in, held_out, paper_split)
    rows3 = table3_rows(by_method)
    out["table3"] = {n: {"in": t1[n]["avg_in"], "out": t1[n]["avg_out"],
                         "part_in": t1[n]["part_in"], "part_out": t1[n]["part_out"]} for _, _, n in rows3}
    out["paper"]["table3"] = {n: paper_averages(paper_bb, what[n]) for _, _, n in rows3}
    if rows3:
        print_table3(rows3, out["table3"], out["paper"]["table3"], paper_split, paper_label, on)
    if outside:
        print(f"\nlabels outside the --label convention (Table 1 only): {', '.join(outside)}")

    # ---- Tables 4 and 5: the single-task rows, each on the env it was trained on
    out["table4"], out["table5"], elsewhere = tables45(single, main)
    if out["table4"]:
        print_table45("Table 4: ATLaS vs value-function selection", "Method", out["table4"], main)
    if out["table5"]:
        print_table45("Table 5: the selector LLM of ATLaS", "Selector", out["table5"], main)

    # ---- Table 6: the --from-critical episodes of every row
    keys6 = [key for key, envs in rows.items() if any("start" in r for rs in envs.values() for r in rs)]
    named6 = row_names(keys6, main, backbones=True)
    t6 = out["table6"] = table6({named6[k]: rows[k] for k in keys6})
    out["paper"]["table6"] = {named6[k]: {env: P.TABLE6.get((paper_backbone(k[0], main)[0], env))
                                          for env in t6.get(named6[k], {})}
                              for k in keys6 if (row_of(k[2], rows[k]) or ("",))[0] == "base"}
    if t6:
        print_table6(t6, out["paper"]["table6"], paper_label)

    # ---- Table 7 and Figure 2: every backbone's complete, random and critical rows
    out["table7"], out["paper"]["table7"], what7, sections, unplaced = table7(multi, main, held_in, held_out)
    if sections:
        print_wide("Table 7: backbones, random selection, the critical ratio (each backbone's complete, random@m, "
                   "critical@m rows)", sections, held_in, held_out, paper_split)
    out["figure2"] = figure2(out["table7"], out["paper"]["table7"], what7, main)
    if out["figure2"]:
        print_figure2(out["figure2"], paper_split)
    if unplaced:
        print(f"\nrows of other backbones in no table (Table 7 takes complete, random@m, critical@m): "
              f"{'; '.join(unplaced)}")
    unused = sorted(f"{k[2]} [{k[0]}, {k[1]} only]" for k in single if row_of(k[2], single[k]) is None
                    or row_of(k[2], single[k])[0] not in ("critical", "value"))
    if unused:
        print(f"single-task rows in no table (Tables 4 and 5 take critical and value rows): {'; '.join(unused)}")
    if elsewhere:
        print(f"single-task rows' episodes on an env they were not trained on (in no table): {elsewhere}")

    png = args.report_png or os.path.join(os.path.dirname(sorted(glob.glob(args.report[0]) or args.report)[0]),
                                          "table1.png")
    out["charts"] = charts(png, t1, rows3, t6, held_in, held_out, out["table3"], out["figure2"])
    return out


def table2_labels(by_method):
    """Table 2: non-critical vs complete vs critical, at the non-critical runs' ratios (else every critical ratio)."""
    ratios = sorted(by_method["noncritical"]) or sorted(by_method["critical"])
    return ([n for m in ratios for n in by_method["noncritical"].get(m, [])]
            + [n for n in by_method["complete"].get(1.0, [])]
            + [n for m in ratios for n in by_method["critical"].get(m, [])])


def table3_rows(by_method):
    """Table 3: [(data, steps, name)] for complete, then random@m, each new selector's rows (a method none of the
    paper's, by name) and critical@m, from the largest m down."""
    new = sorted(m for m in by_method if m not in METHODS)
    def down(method):
        return sorted((m for m in by_method[method] if m is not None), reverse=True)
    return ([("Complete", "100%", n) for n in by_method["complete"].get(1.0, [])]
            + [("Random", f"{m:.0%}", n) for m in down("random") for n in by_method["random"][m]]
            + [(name.title(), f"{m:.0%}", n) for name in new for m in down(name) for n in by_method[name][m]]
            + [("Critical", f"{m:.0%}", n) for m in down("critical") for n in by_method["critical"][m]])


def print_table3(rows3, t3, paper3, paper_split, paper_label, on):
    """Table 3: the held-in and held-out averages of each row, with the partial averages where a split is short,
    and the paper's averages of the same row."""
    avg = "AVG" if paper_split else "AVG*"
    print(f"\nTable 3: random vs critical steps at each ratio{on} ({avg} of the split's columns, 95 % interval, "
          f"episodes; {paper_label}: the paper's, with ours - paper)")
    print(f"{'Data':10}{'Steps':>6}  {'held-in ' + avg:>30}  {'held-out ' + avg:>30}  {'paper in':>9}{'diff':>8}"
          f"{'paper out':>10}{'diff':>8}  partial averages")
    pairs = [(data, steps) for data, steps, _ in rows3]
    for data, steps, label in rows3:
        s, p = t3[label], paper3[label] or (None, None)
        cells = [f"{c['score']:.2f} [{fmt(c, 'ci')}] n={c['n']}" if c else "-" for c in (s["in"], s["out"])]
        diffs = [num(minus(c, x), signed=True) if paper_split else "-" for c, x in zip((s["in"], s["out"]), p)]
        partial = "; ".join(f"{g} {part(s[k])}" for g, k in (("held-in", "part_in"), ("held-out", "part_out"))
                            if s[k])
        same = f"  row: {label}" if pairs.count((data, steps)) > 1 else ""  # two selector models, one ratio
        print(f"{data:10}{steps:>6}  {cells[0]:>30}  {cells[1]:>30}  {num(p[0]):>9}{diffs[0]:>8}{num(p[1]):>10}"
              f"{diffs[1]:>8}  {partial}{same}")


def print_table6(t6, paper6, paper_label):
    print("\nTable 6: from scratch vs from a critical step (the expert's turns through critical step c replayed, "
          "then the policy)")
    print("'from critical step' is the mean over all restart episodes (each critical step of each task counts "
          "once); 'per-task best' takes each task's best restart (solved if any restart solves it).")
    width = max(16, max(len(label) for label in t6) + 2)
    print(f"{'label':{width}}{'Tasks':10}{'From scratch':>28}{'From critical step':>28}{'per-task best':>28}"
          f"{'ended in replay':>17}{'paper scratch':>15}{'paper critical':>16}")
    for label, envs in t6.items():
        for env, c in envs.items():
            cells = [f"{x['score']:.2f} [{fmt(x, 'ci')}] n={x['n']}" if x else "-"
                     for x in (c["scratch"], c["critical"], c["best"])]
            p = paper6.get(label, {}).get(env) or (None, None)
            print(f"{label:{width}}{column(env):10}" + "".join(f"{x:>28}" for x in cells)
                  + f"{c['replay_only']:>17}{num(p[0]):>15}{num(p[1]):>16}")
    print("n: episodes (from scratch and per-task best: one per task). 'ended in replay': restarts whose replayed "
          "expert turns already finished the episode (the policy took no turn). paper: the paper's Table 6 (its "
          "base Llama-3.1-8B-Instruct on 100 tasks; it does not say whether its 'from critical step' is a mean or "
          f"a best: set beside our mean){'' if paper_label == 'paper' else f', {paper_label} for the main backbone'}.")


# ----------------------------------------------------------------------------- Tables 4, 5, 7 and Figure 2

def by_backbone(keys, main):
    """The backbones of `keys`, the main one first, then the others by name."""
    return sorted({k[0] for k in keys}, key=lambda b: (b != main, b or ""))


def tables45(single, main):
    """Tables 4 and 5 from the single-task rows, each scored on the env it was trained on (the scope): ({backbone:
    [row]}, {backbone: {"rows": [row], "average": [row]}}, the episodes on other envs). A row is {env, method
    ("ATLaS" or "Value Func."), selector (the selector model), ratio, label, cell, paper, diff}. Table 4 has the
    critical (oracle) and value rows, Table 5 the critical rows by selector, and per selector the average over
    the table's envs when it has every one of them."""
    t4, t5, elsewhere = defaultdict(list), {}, 0
    for backbone in by_backbone(single, main):
        paper_bb = paper_backbone(backbone, main)[0]
        rows = []
        rank = {e: i for i, e in enumerate(REGISTRY)}

        def order(item):  # by env (registry order), ATLaS before the value function, m down, selector, label
            (_, env, label, model), row = item
            return (rank.get(env, len(rank)), env, row is None or row[0] != "critical", -((row or (0, 0))[1] or 0),
                    str(model), label)
        for key, row in sorted(((k, row_of(k[2], single[k])) for k in single if k[0] == backbone), key=order):
            _, env, label, model = key
            elsewhere += sum(len(rs) for e, rs in single[key].items() if e != env)
            if env not in single[key] or row is None or row[0] not in ("critical", "value"):
                continue
            ours = cell(env, single[key][env])
            at_m = row[1] is not None and round(row[1], 6) == P.RATIO
            selector = paper_selector(model)
            oracle = at_m and selector == P.ORACLE  # the paper's Table 4 ATLaS: GPT-4o at m = 30 %
            paper4 = P.TABLE4.get((paper_bb, env, row[0])) if row[0] == "value" or oracle else None
            base = {"env": env, "method": "ATLaS" if row[0] == "critical" else "Value Func.", "selector": model,
                    "ratio": row[1], "label": label, "cell": ours}
            t4[backbone].append({**base, "paper": paper4, "diff": minus(ours, paper4)})
            if row[0] == "critical":
                paper5 = P.TABLE5.get((paper_bb, env, selector)) if at_m else None
                rows.append({**base, "paper": paper5, "diff": minus(ours, paper5)})
        if not rows:
            continue
        envs = env_order({r["env"] for r in rows})
        average_rows = []
        for selector, ratio in sorted({(r["selector"], r["ratio"]) for r in rows}, key=lambda x: (str(x[0]), x[1])):
            mine = {r["env"]: r for r in rows if (r["selector"], r["ratio"]) == (selector, ratio)}
            if len(envs) < 2 or set(mine) != set(envs):
                continue
            ours = average([mine[e]["cell"] for e in envs])
            papers = [mine[e]["paper"] for e in envs]
            paper = sum(papers) / len(papers) if None not in papers else None
            average_rows.append({"env": "Average", "method": "ATLaS", "selector": selector, "ratio": ratio,
                                 "label": None, "cell": ours, "paper": paper, "diff": minus(ours, paper)})
        t5[backbone] = {"rows": rows, "average": average_rows}
    return dict(t4), t5, elsewhere


def print_table45(title, kind, table, main):
    """Tables 4 and 5 in the paper's layout (a line per env and method (Table 4) or selector (Table 5)), with
    the selector model, m, episodes, intervals, the paper's number and ours - paper."""
    print(f"\n{title}: single-task models, each trained and evaluated on one env (score as in Table 1)")
    for backbone, rows in table.items():
        rows = rows if kind == "Method" else rows["rows"] + rows["average"]
        label = paper_backbone(backbone, main)[1]
        print(f" backbone {backbone or '(the results name none)'}{' (main)' if backbone == main else ''}: "
              + (f"the paper's numbers as '{label}'" if label else "not one of the paper's backbones (no paper "
                 "numbers)"))
        ws = max([10] + [len(str(r["selector"])) + 2 for r in rows])
        print(f"{'Task':12}" + f"{'Method':13}" * (kind == "Method") + f"{'Selector':{ws}}{'m':>4}{'score':>9}"
              f"{'95 % interval':>15}{'episodes':>10}{'paper':>9}{'ours - paper':>14}")
        previous = None
        for r in rows:
            task, previous = "" if r["env"] == previous else column(r["env"]), r["env"]
            m = "-" if r["ratio"] is None else f"{r['ratio']:.0%}"
            print(f"{task:12}" + f"{r['method']:13}" * (kind == "Method") + f"{str(r['selector'] or '-'):{ws}}"
                  f"{m:>4}{fmt(r['cell']):>9}{fmt(r['cell'], 'ci'):>15}{r['cell']['n']:>10}{num(r['paper']):>9}"
                  f"{num(r['diff'], signed=True):>14}")
    if kind == "Selector":
        print("Average: the mean of a selector's env rows (when it has every env of the table), the paper's the same "
              "mean of its cells (the paper prints no average row).")
    print(f"paper: the paper's {title.split(':')[0]} (Llama-3.1-8B-Instruct, GPT-4o as the selector unless named, "
          f"m = {P.RATIO:.0%}); '-' where it has no such row.")


def table7(multi, main, held_in, held_out):
    """Table 7 from every backbone's multi-task rows: ({backbone: {name: summary}}, {backbone: {name: the paper's
    cells or None}}, {backbone: {name: (method, ratio)}}, the sections for print_wide (the other backbones by name,
    then the main one, as the paper: Mistral, Qwen, then Llama's random and critical sweeps), [the rows of other
    backbones outside the layout])."""
    t7, paper7, what7, sections, unplaced = {}, {}, {}, [], []
    for backbone in sorted(by_backbone(multi, main), key=lambda b: (b == main, b or "")):
        keys = [k for k in multi if k[0] == backbone]
        named = row_names(keys, main)
        what = {named[k]: row_of(k[2], multi[k]) for k in keys}
        by_method, _ = labels_by_method(what)
        order = (by_method["complete"].get(1.0, []) + [n for m in sorted(by_method["random"], reverse=True)
                                                         for n in by_method["random"][m]]
                 + [n for m in sorted(by_method["critical"], reverse=True) for n in by_method["critical"][m]])
        if backbone != main:
            unplaced += [f"{n} [{backbone}]" for n in named.values() if n not in order]
        if not order:
            continue
        paper_bb, label = paper_backbone(backbone, main)
        by_name = {named[k]: k for k in keys}
        t7[backbone] = {n: summarize(multi[by_name[n]], held_in, held_out) for n in order}
        paper7[backbone] = {n: paper_row(P.TABLE7, paper_bb, what[n]) for n in order}
        what7[backbone] = {n: what[n] for n in order}
        heading = (f"{backbone or '(the results name no backbone)'}{' (main)' if backbone == main else ''}"
                   + ("" if label else ": not one of the paper's backbones (no paper numbers)"))
        sections.append((heading, [(n, t7[backbone][n], (label, paper7[backbone][n]) if paper7[backbone][n]
                                    else None) for n in order]))
    return t7, paper7, what7, sections, unplaced


def figure2(t7, paper7, what7, main):
    """Figure 2: per backbone (the main one first) its complete and critical@m (the paper's m) rows of Table 7
    with their held-in and held-out averages: {backbone: {name: {row, in, out (the AVG, else the partial average
    with its 'of'), paper_in, paper_out, diff_in, diff_out (against the AVG only)}}}."""
    out = {}
    for backbone in sorted(t7, key=lambda b: (b != main, b or "")):
        for name, s in t7[backbone].items():
            method, ratio = what7[backbone][name]
            if not (method == "complete" or method == "critical" and round(ratio, 6) == P.RATIO):
                continue
            paper = paper7[backbone][name] or {}
            out.setdefault(backbone, {})[name] = {
                "row": method, "in": s["avg_in"] or s["part_in"], "out": s["avg_out"] or s["part_out"],
                "paper_in": paper.get("avg_in"), "paper_out": paper.get("avg_out"),
                "diff_in": minus(s["avg_in"], paper.get("avg_in")),
                "diff_out": minus(s["avg_out"], paper.get("avg_out"))}
    return out


def print_figure2(fig, paper_split):
    """Figure 2 as a text table: a line per backbone and row, held-in and held-out averages beside the paper's."""
    print(f"\nFigure 2: ATLaS (critical@{P.RATIO:g}) vs full trajectories (complete) per backbone, held-in and "
          f"held-out {'AVG' if paper_split else 'AVG*'} (k/N: a partial average over the k of N columns present)")
    wb = max(12, max(len(str(b)) for b in fig) + 2)
    wn = max(8, max(len(n) for rows in fig.values() for n in rows) + 2)
    print(f"{'backbone':{wb}}{'row':{wn}}" + f"{'held-in':>16}{'paper':>9}{'ours - paper':>14}"
          f"{'held-out':>16}{'paper':>9}{'ours - paper':>14}")
    for backbone, rows in fig.items():
        for name, r in rows.items():
            cells = []
            for s in ("in", "out"):
                c = r[s]
                cells += [part(c) if c and "of" in c else fmt(c), num(r[f"paper_{s}"]),
                          num(r[f"diff_{s}"], signed=True) if paper_split else "-"]
            print(f"{str(backbone or '-'):{wb}}{name:{wn}}" + "".join(f"{x:>{w}}" for x, w in
                                                                    zip(cells, (16, 9, 14, 16, 9, 14))))
    print("paper: the AVG columns of the paper's Tables 1 and 7 for the same rows (Figure 2 itself is an image "
          "whose values the text does not give).")


def main(argv=None):
    args = get_args(argv)
    try:
        return report(args)
    except (RecordError, OSError, ValueError) as e:
        raise SystemExit(f"report.py: {e}") from None


if __name__ == "__main__":
    main()
