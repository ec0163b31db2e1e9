"""The numbers of the report: each environment's column and score kind (its own facts, envs/), per-env cells with 95 %
intervals (Wilson for success rates, mean +- 1.96 s/sqrt(n) for mean rewards and progress rates), the split
averages, and the paper's number for the same row (paper_numbers.py)."""
import math
import re

import paper_numbers as P
from envs import REGISTRY, env_class, names
from envs.base import Env

HELD_IN, HELD_OUT = names("held-in"), names("held-out")
Z95 = 1.959963984540054


# ----------------------------------------------------------------------------- the environments' facts

def facts(env):
    """The class that declares env's facts (an env outside the registry is scored as a success rate)."""
    return env_class(env) if env in REGISTRY else Env


def column(env):
    return facts(env).column if env in REGISTRY else env


def env_order(envs):
    """Registered envs in the registry's (the paper's) order, then the others by name."""
    return [e for e in REGISTRY if e in envs] + sorted(e for e in envs if e not in REGISTRY)


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


# ----------------------------------------------------------------------------- the paper's numbers

def paper_backbone(backbone, main):
    """(the paper's backbone that rows of `backbone` are compared with, or None; the label of its rows): by name
    (paper_numbers.BACKBONES); the main backbone of no paper name is compared with the paper's own,
    Llama-3.1-8B-Instruct, and its rows say so."""
    for key, paper in P.BACKBONES.items():
        if key in (backbone or "").lower():
            return paper, "paper"
    return (P.LLAMA, f"paper ({P.LLAMA})") if backbone == main else (None, None)


def paper_selector(model):
    """The paper's name of a selector LLM (paper_numbers.SELECTORS), or None."""
    return next((name for pat, name in P.SELECTORS.items() if model and re.search(pat, str(model).lower())), None)


def paper_key(backbone, row):
    """The key of a (method, ratio) row of the paper's `backbone` in paper_numbers' tables."""
    return backbone, row[0], None if row[1] is None else round(float(row[1]), 6)


def paper_row(first, backbone, row):
    """{column: the paper's value} of a (method, ratio) row of `backbone`, from the paper's table `first`, else
    from another of its 16-column tables with the row (Table 7's Llama complete is Table 1's, Table 1's Mistral
    and Qwen rows are Table 7's); None when the paper has no such row."""
    if backbone is None or row is None:
        return None
    key = paper_key(backbone, row)
    return next((dict(zip(P.COLUMNS, t[key])) for t in (first, P.TABLE1, P.TABLE2, P.TABLE7) if key in t), None)


def minus(ours, paper):
    """ours - paper for an our cell (or None) and the paper's number (or None)."""
    return None if ours is None or paper is None else ours["score"] - paper


def paper_averages(backbone, row):
    """The paper's (held-in AVG, held-out AVG) of a row: Table 3's, else the AVG columns of its row in Table 1 or
    7; None when the paper has no such row."""
    if backbone is None or row is None:
        return None
    if paper_key(backbone, row) in P.TABLE3:
        return P.TABLE3[paper_key(backbone, row)]
    cells = paper_row(P.TABLE1, backbone, row)
    return (cells["avg_in"], cells["avg_out"]) if cells else None
