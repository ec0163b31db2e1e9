"""Compare selection files: which steps did the oracle (select.py), perplexity.py and value_estimate.py pick, and
how much of the training signal do they keep?

    python analyze.py out/oracle.jsonl out/ppl.jsonl out/value.jsonl            # a text report
    python analyze.py out/select/*.jsonl --tokenizer Llama-3.1-8B-Instruct      # + the share of loss tokens
    python analyze.py out/oracle.jsonl out/ppl.jsonl --json out/compare.json    # + the numbers as JSON

Per file, and per env of the file (the env of an item_id by trajectory.split_item_id: maze_3 -> maze, also with
AgentGym's prefixes, lmrlgym_maze_3 -> maze, tool_weather_5 -> weather; an id it cannot read is an error):
  m            the selection ratio the selector was given (selection.ratio)
  steps share  selected steps / all steps: the ratio actually realised. The budget k = max(1, floor(m * T)) of a
               T-step trajectory makes it differ from m: short trajectories get floor(m * T) < 1 and are raised to k = 1
  k=1          trajectories whose budget is the minimum of one step (of these, "raised" had m * T < 1)
  token share  (with --tokenizer) loss tokens / the loss tokens of all steps, counted exactly as train.py counts them
               (trajectory.tokenize_record with the model's chat template, --max-length as train.py's): the paper's
               headline is "30 % of the tokens", not of the steps
  none, pos    trajectories with no selected step; the mean relative position (i - 1) / (T - 1) of the selected steps
               (0 = first, 1 = last; a 1-step trajectory counts as 0.5), with a histogram
and for oracle files the category histogram of the selected steps (selection.reasons[].category).
A file whose records carry no critical_steps (the training data itself) is read as the complete selection (m = 1).
Per pair of files, over the trajectories both hold: the mean and median Jaccard overlap |A & B| / |A | B| of the
selected steps (1 when both are empty), next to the mean Jaccard two uniformly random selections of the same
sizes would have (exact, hypergeometric): overlap above it is agreement beyond chance.
"""
import argparse
import json
import math
import os
import statistics
from collections import Counter, defaultdict
from itertools import combinations

import trajectory

def load(path):
    """{item_id: dict(env, steps, critical, selection, record)} of a selection file; a file with no critical_steps
    at all is the complete selection (every step, m = 1)."""
    if os.path.isdir(path):
        raise trajectory.RecordError(f"{path}: is a folder, not a selection file")
    out, plain = {}, []
    for n, rec in trajectory.iter_records(path):
        has = "critical_steps" in rec
        if out and has != (not plain):
            raise trajectory.RecordError(f"{path}: record {n} (item_id {rec['item_id']!r}) "
                                         f"{'has' if has else 'has no'} 'critical_steps' unlike the records before "
                                         f"it: a file is either a selection or plain data")
        try:
            env = trajectory.split_item_id(rec["item_id"])[0]
        except ValueError as e:
            raise trajectory.RecordError(f"{path}: record {n}: {e}") from None
        steps = trajectory.step_indices(rec)
        if not has:
            plain.append(n)
        out[rec["item_id"]] = {"env": env, "steps": steps, "critical": rec["critical_steps"] if has else steps,
                               "selection": rec.get("selection") or ({} if has else
                                                                      {"method": "complete", "ratio": 1.0}),
                               "record": rec}
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


def token_counts(rec, tokenizer, max_length):
    """(loss tokens train.py trains on, loss tokens it would train on with every step) of one record."""
    t = trajectory.tokenize_record(rec, tokenizer, max_length)
    return t["n_loss_tokens"], sum(e - s for s, e in t["spans"].values())


def summarize(name, data, bins, tokenizer=None, max_length=None):
    items = list(data.values())
    n_steps = sum(len(d["steps"]) for d in items)
    n_sel = sum(len(d["critical"]) for d in items)
    pos = [p for d in items for p in positions(d["steps"], d["critical"])]
    hist = [0] * bins
    for p in pos:
        hist[min(int(p * bins), bins - 1)] += 1
    cats = Counter(str(r.get("category")) for d in items for r in d["selection"].get("reasons", [])
                   if isinstance(r, dict) and r.get("index") in d["critical"])
    methods = Counter(str(d["selection"].get("method", "?")) for d in items)
    ratios = sorted({d["selection"]["ratio"] for d in items if isinstance(d["selection"].get("ratio"), (int, float))})
    k1 = raised = 0
    for d in items:
        m = d["selection"].get("ratio")
        if isinstance(m, (int, float)) and 0 < m <= 1:
            k1 += trajectory.budget(len(d["steps"]), m) == 1
            raised += math.floor(m * len(d["steps"]) + 1e-9) == 0
    out = {"file": name, "method": "/".join(sorted(methods)), "ratio": ratios, "trajectories": len(items),
           "steps": n_steps, "selected": n_sel, "share_selected": n_sel / max(n_steps, 1),
           "mean_share_per_trajectory": statistics.fmean(len(d["critical"]) / len(d["steps"]) for d in items),
           "budget_one": k1, "budget_raised_to_one": raised,
           "none_selected": sum(not d["critical"] for d in items),
           "mean_position": statistics.fmean(pos) if pos else None,
           "position_histogram": [h / max(len(pos), 1) for h in hist], "categories": dict(cats.most_common())}
    if tokenizer is not None:
        loss = full = 0
        for d in items:
            a, b = token_counts(d["record"], tokenizer, max_length)
            loss, full = loss + a, full + b
        out.update(loss_tokens=loss, step_tokens=full, share_tokens=loss / max(full, 1))
    return out


def compare(a, b):
    common = sorted(set(a) & set(b), key=str)
    for item in common:
        if a[item]["steps"] != b[item]["steps"]:
            raise trajectory.RecordError(f"item_id {item!r}: the two files list different steps "
                                         f"({a[item]['steps']} vs {b[item]['steps']}): they come from different "
                                         f"sources")
    js = [jaccard(a[i]["critical"], b[i]["critical"]) for i in common]
    rnd = [random_jaccard(len(a[i]["steps"]), len(a[i]["critical"]), len(b[i]["critical"])) for i in common]
    return {"common": len(common), "only_first": len(set(a) - set(b)), "only_second": len(set(b) - set(a)),
            "jaccard_mean": statistics.fmean(js) if js else None,
            "jaccard_median": statistics.median(js) if js else None,
            "random_jaccard_mean": statistics.fmean(rnd) if rnd else None}


def load_tokenizer(path):
    if not os.path.isdir(path):
        raise trajectory.RecordError(f"--tokenizer {path}: no such model folder")
    from transformers import AutoTokenizer
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise trajectory.RecordError(f"--tokenizer {path}: cannot load a tokenizer "
                                     f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if getattr(tok, "chat_template", None) is None:
        raise trajectory.RecordError(f"--tokenizer {path}: no chat template (train.py renders trajectories with it)")
    return tok


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # ---- input / output
    p.add_argument("files", nargs="+", help="selection files (JSONL written by select.py, perplexity.py, "
                                            "value_estimate.py); two or more for the overlaps")
    p.add_argument("--bins", type=int, default=5, help="bins of the position histogram")
    p.add_argument("--json", default=None, help="also write every number to this JSON file")
    # ---- loss tokens
    p.add_argument("--tokenizer", default=None, help="model folder: also count the loss tokens (as train.py does)")
    p.add_argument("--max-length", type=int, default=8192, help="tokens per trajectory, as train.py --max-length "
                                                                "(turns cut by it carry no loss there either)")
    args = p.parse_args(argv)
    if args.bins < 1 or args.max_length < 1:
        p.error("--bins and --max-length must be at least 1")
    if args.json and os.path.isdir(args.json):
        p.error(f"--json {args.json}: is a folder")
    if args.json and any(os.path.abspath(args.json) == os.path.abspath(f) for f in args.files):
        p.error(f"--json {args.json} is one of the input files {args.json}: write the numbers to another file")
    try:
        return report(args)
    except (trajectory.RecordError, OSError, ValueError) as e:
        raise SystemExit(f"analyze.py: {e}") from None


def report(args):
    files = selection_files(args.files)
    data = {f: load(f) for f in files}  # every input is read before the tokenizer loads
    tok = load_tokenizer(args.tokenizer) if args.tokenizer else None
    per_file, per_env = summaries(data, args.bins, tok, args.max_length)
    pairs = [{"first": x, "second": y, **compare(data[x], data[y])} for x, y in combinations(files, 2)]
    print_table(per_file, per_env, args.bins)
    if tok is None:
        print("token share: pass --tokenizer MODEL_FOLDER (the model train.py fine-tunes) to count loss tokens")
    for s in per_file:
        if s["categories"]:
            total = sum(s["categories"].values())
            cats = ", ".join(f"{c} {n} ({n / total:.0%})" for c, n in s["categories"].items())
            print(f"categories of {os.path.basename(s['file'])}: {cats}")
    print_pairs(pairs)
    result = {"files": per_file, "envs": per_env, "pairs": pairs}
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, args.json)
        print(f"wrote {args.json}")
    return result


def selection_files(paths):
    """The selection files among `paths`, each once; select.py's errors files (a glob picks them up) left out."""
    files = []
    for f in dict.fromkeys(paths):
        if f.endswith(".errors.jsonl"):
            print(f"{f}: an errors file of select.py, not a selection: left out")
        else:
            files.append(f)
    if not files:
        raise trajectory.RecordError("no selection file among " + " ".join(paths))
    return files


def summaries(data, bins, tokenizer, max_length):
    """(one summary per file, one per env of each file)."""
    per_file, per_env = [], []
    for f, d in data.items():
        per_file.append(summarize(f, d, bins, tokenizer, max_length))
        by_env = defaultdict(dict)
        for item, x in d.items():
            by_env[x["env"]][item] = x
        for env in sorted(by_env):
            per_env.append({"env": env, **summarize(f, by_env[env], bins, tokenizer, max_length)})
    return per_file, per_env


def print_table(per_file, per_env, bins):
    """One row per file ("all") followed by one row per env of that file."""
    edges = " ".join(f"{i / bins:.1f}-{(i + 1) / bins:.1f}" for i in range(bins))
    print(f"{'file':<28} {'env':<10} {'method':<11} {'m':>5} {'traj':>6} {'steps':>7} {'sel':>6} {'steps':>6} "
          f"{'tokens':>6} {'k=1':>11} {'none':>5} {'pos':>5}  position histogram ({edges})")
    print(f"{'':<28} {'':<10} {'':<11} {'':>5} {'':>6} {'':>7} {'':>6} {'share':>6} {'share':>6} "
          f"{'(raised)':>11}")
    rows = [r for s in per_file for r in [(s, "all")] + [(e, e["env"]) for e in per_env if e["file"] == s["file"]]]
    for s, env in rows:
        m = "/".join(f"{r:g}" for r in s["ratio"]) or "-"
        pos = f"{s['mean_position']:.2f}" if s["mean_position"] is not None else "-"
        tokens = f"{s['share_tokens']:.3f}" if "share_tokens" in s else "-"
        hist = " ".join(f"{h:5.2f}" for h in s["position_histogram"])
        k1 = f"{s['budget_one']} ({s['budget_raised_to_one']})"
        print(f"{os.path.basename(s['file']) if env == 'all' else '':<28} {env:<10} {s['method']:<11} {m:>5} "
              f"{s['trajectories']:>6} {s['steps']:>7} {s['selected']:>6} {s['share_selected']:>6.3f} {tokens:>6} "
              f"{k1:>11} {s['none_selected']:>5} {pos:>5}  {hist}")


def print_pairs(pairs):
    for q in pairs:
        if q["common"]:
            print(f"{os.path.basename(q['first'])} vs {os.path.basename(q['second'])}: {q['common']} common "
                  f"trajectories, Jaccard mean {q['jaccard_mean']:.3f} (median {q['jaccard_median']:.3f}; "
                  f"random selections of the same sizes: {q['random_jaccard_mean']:.3f})"
                  + (f"; {q['only_first']} / {q['only_second']} only in one file" if q["only_first"] or
                     q["only_second"] else ""))
        else:
            print(f"{os.path.basename(q['first'])} vs {os.path.basename(q['second'])}: no common item_id")


if __name__ == "__main__":
    main()
