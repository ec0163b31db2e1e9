"""Compare selection files: which steps did the oracle (select.py), perplexity.py and value_estimate.py pick?

    python analyze.py out/oracle.jsonl out/ppl.jsonl out/value.jsonl            # a text report
    python analyze.py out/oracle.jsonl out/ppl.jsonl --json out/compare.json    # + the numbers as JSON

Per file: trajectories, share of steps selected (over all steps, and the mean per trajectory), trajectories with
no selected step, where the selected steps sit along their trajectory (relative position (i - 1) / (T - 1) of the
i-th of T steps, 0 = first, 1 = last; a 1-step trajectory counts as 0.5) as a histogram, and for oracle files the
category histogram of the selected steps (selection.reasons[].category).
Per pair of files, over the trajectories both hold: the mean and median Jaccard overlap |A & B| / |A | B| of the
selected steps (1 when both are empty), next to the mean Jaccard two uniformly random selections of the same
sizes would have (exact, hypergeometric): overlap above it is agreement beyond chance.
"""
import argparse
import json
import math
import os
import statistics
from collections import Counter
from itertools import combinations

import trajectory


def load(path):
    """{item_id: (steps, critical steps, selection)} of a selection file."""
    out = {}
    for n, rec in trajectory.iter_records(path):
        if "critical_steps" not in rec:
            raise trajectory.RecordError(f"{path}: record {n} (item_id {rec['item_id']!r}) has no 'critical_steps': "
                                         f"not the output of a selector")
        out[rec["item_id"]] = (trajectory.step_indices(rec), rec["critical_steps"], rec.get("selection") or {})
    if not out:
        raise trajectory.RecordError(f"{path}: no records")
    return out


def jaccard(a, b):
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


def random_jaccard(T, a, b):
    """E[Jaccard] of two independent uniform subsets of sizes a and b of T steps: |A & B| is hypergeometric."""
    if a + b == 0:
        return 1.0
    return sum(math.comb(a, i) * math.comb(T - a, b - i) / math.comb(T, b) * i / (a + b - i)
               for i in range(max(0, a + b - T), min(a, b) + 1))


def positions(steps, critical):
    T = len(steps)
    return [steps.index(s) / (T - 1) if T > 1 else 0.5 for s in critical]


def summarize(name, data, bins):
    n_steps = sum(len(s) for s, _, _ in data.values())
    n_sel = sum(len(c) for _, c, _ in data.values())
    pos = [p for s, c, _ in data.values() for p in positions(s, c)]
    hist = [0] * bins
    for p in pos:
        hist[min(int(p * bins), bins - 1)] += 1
    cats = Counter(str(r.get("category")) for s, c, sel in data.values() for r in sel.get("reasons", [])
                   if r.get("index") in c)
    methods = Counter(sel.get("method", "?") for _, _, sel in data.values())
    return {"file": name, "method": "/".join(sorted(methods)), "trajectories": len(data), "steps": n_steps,
            "selected": n_sel, "share_selected": n_sel / max(n_steps, 1),
            "mean_share_per_trajectory": statistics.fmean(len(c) / len(s) for s, c, _ in data.values()),
            "none_selected": sum(not c for _, c, _ in data.values()),
            "mean_position": statistics.fmean(pos) if pos else None,
            "position_histogram": [h / max(len(pos), 1) for h in hist], "categories": dict(cats.most_common())}


def compare(a, b):
    common = sorted(set(a) & set(b), key=str)
    for item in common:
        if a[item][0] != b[item][0]:
            raise trajectory.RecordError(f"item_id {item!r}: the two files list different steps "
                                         f"({a[item][0]} vs {b[item][0]}): they come from different sources")
    js = [jaccard(a[i][1], b[i][1]) for i in common]
    rnd = [random_jaccard(len(a[i][0]), len(a[i][1]), len(b[i][1])) for i in common]
    return {"common": len(common), "only_first": len(set(a) - set(b)), "only_second": len(set(b) - set(a)),
            "jaccard_mean": statistics.fmean(js) if js else None,
            "jaccard_median": statistics.median(js) if js else None,
            "random_jaccard_mean": statistics.fmean(rnd) if rnd else None}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # ---- input / output
    p.add_argument("files", nargs="+", help="selection files (JSONL written by select.py, perplexity.py, "
                                            "value_estimate.py); two or more for the overlaps")
    p.add_argument("--bins", type=int, default=5, help="bins of the position histogram")
    p.add_argument("--json", default=None, help="also write every number to this JSON file")
    args = p.parse_args(argv)

    data = {f: load(f) for f in args.files}
    files = [summarize(f, d, args.bins) for f, d in data.items()]
    pairs = [{"first": x, "second": y, **compare(data[x], data[y])} for x, y in combinations(args.files, 2)]

    edges = " ".join(f"{i / args.bins:.1f}-{(i + 1) / args.bins:.1f}" for i in range(args.bins))
    print(f"{'file':<32} {'method':<12} {'traj':>6} {'steps':>7} {'share':>6} {'none':>5} {'pos':>5}  "
          f"position histogram ({edges})")
    for s in files:
        pos = f"{s['mean_position']:.2f}" if s["mean_position"] is not None else "-"
        hist = " ".join(f"{h:7.2f}" for h in s["position_histogram"])
        print(f"{os.path.basename(s['file']):<32} {s['method']:<12} {s['trajectories']:>6} {s['steps']:>7} "
              f"{s['share_selected']:>6.3f} {s['none_selected']:>5} {pos:>5}  {hist}")
    for s in files:
        if s["categories"]:
            total = sum(s["categories"].values())
            cats = ", ".join(f"{c} {n} ({n / total:.0%})" for c, n in s["categories"].items())
            print(f"categories of {os.path.basename(s['file'])}: {cats}")
    for q in pairs:
        if q["common"]:
            print(f"{os.path.basename(q['first'])} vs {os.path.basename(q['second'])}: {q['common']} common "
                  f"trajectories, Jaccard mean {q['jaccard_mean']:.3f} (median {q['jaccard_median']:.3f}; "
                  f"random selections of the same sizes: {q['random_jaccard_mean']:.3f})"
                  + (f"; {q['only_first']} / {q['only_second']} only in one file" if q["only_first"] or
                     q["only_second"] else ""))
        else:
            print(f"{os.path.basename(q['first'])} vs {os.path.basename(q['second'])}: no common item_id")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"files": files, "pairs": pairs}, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
