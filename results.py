"""Reading evaluate.py's result files into the report's rows: each line checked, grouped by (backbone, scope, label,
selector model), and what a row is (method, ratio) from its label or from the selection its results carry.

A row's method is the paper's name for it: the label convention's (base, complete, critical@M, noncritical@M,
random@M, perplexity@M, value@M), else the selection's `method` (oracle -> critical, complement -> noncritical); a
method outside the paper's is a new selector and gets rows of its own (report.py, docs/FORKING.md).
"""
import glob
import json
import math
import os
import re
from collections import defaultdict

from trajectory import RecordError

# the paper's rows; a selection.method outside them is a new selector (its own rows in Tables 1 and 3)
METHODS = ("base", "complete", "critical", "noncritical", "random", "perplexity", "value")
ROW_OF_METHOD = {"oracle": "critical", "complement": "noncritical"}  # selection.method -> the paper's row


def episode_id(item_id, start):
    return f"{item_id}@{'scratch' if start is None else start}"


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
    """[(path, where, result)] of every line of the result files; every line must be a result object."""
    lines = []
    files = sorted({p for pat in patterns for p in (glob.glob(pat) or [pat])})
    for path in files:
        if os.path.isdir(path):
            raise RecordError(f"{path}: is a folder; give result files (globs ok)")
        if not os.path.exists(path):
            raise RecordError(f"{path}: no such file")
        try:
            text = open(path, encoding="utf-8").read().splitlines()
        except UnicodeDecodeError as e:
            raise RecordError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        for n, line in enumerate(text, 1):
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
            if r.get("backbone") is not None and (not isinstance(r["backbone"], str) or not r["backbone"]):
                raise RecordError(f"{where}: 'backbone' must be a model name, got {r['backbone']!r}")
            selection_key(r.get("selection"), where)
            lines.append((path, where, r))
    return lines


def selection_key(sel, where):
    """(method, ratio, selector model) of a result line's `selection` (None without one)."""
    if sel is None:
        return None
    if not isinstance(sel, dict) or not isinstance(sel.get("method"), str):
        raise RecordError(f"{where}: 'selection' must be an object with a 'method', got {sel!r}")
    ratio = sel.get("ratio")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float))):
        raise RecordError(f"{where}: 'selection.ratio' must be a number, got {ratio!r}")
    envs = sel.get("train_envs")
    if envs is not None and (not isinstance(envs, list) or not all(isinstance(e, str) for e in envs)):
        raise RecordError(f"{where}: 'selection.train_envs' must be a list of env names, got {envs!r}")
    if sel.get("backbone") is not None and not isinstance(sel["backbone"], str):
        raise RecordError(f"{where}: 'selection.backbone' must be a model name, got {sel['backbone']!r}")
    return sel["method"], ratio, sel.get("model")


def line_key(path, r):
    """(backbone, scope, label, selector model) of a result line: scope is the env of a model trained on one env
    (its selection.train_envs has one), else None."""
    sel = r.get("selection") or {}
    envs = sel.get("train_envs") or []
    label = str(r.get("label") or os.path.splitext(os.path.basename(path))[0])
    return r.get("backbone") or sel.get("backbone"), envs[0] if len(envs) == 1 else None, label, sel.get("model")


def group_results(lines, want=None):
    """(main backbone, {(backbone, scope, label, selector model): {env: [result]}}). The main backbone is `want`,
    else the one with the most multi-task rows (ties: the first by name); lines without a backbone join it. A row
    is single-task (scope: its env) when its model was trained on one env and evaluated there, and its backbone
    has a model trained on several: Tables 4 and 5 set single-task models beside the multi-task ones, and a run
    whose every model was trained on one env (the demo's BabyAI) reports them as its Table 1 rows. An episode
    counted twice in one row (the same item_id, and with --from-critical the same start) is refused, and so is a
    label whose lines disagree on the selection's method or ratio, naming both places."""
    keyed = [(where, r, line_key(path, r)) for path, where, r in lines]
    named = sorted({k[0] for _, _, k in keyed if k[0]})
    if want and want not in named and all(k[0] for _, _, k in keyed):
        raise RecordError(f"--backbone {want}: no result line has it (backbones in the results: "
                          f"{', '.join(named) or 'none'})")
    counts, fallback = defaultdict(set), defaultdict(set)
    for _, _, (backbone, scope, label, model) in keyed:
        if backbone:
            (counts if scope is None else fallback)[backbone].add((label, model))
    counts = counts or fallback
    main = want or (max(sorted(counts), key=lambda b: len(counts[b])) if counts else None)
    keyed = [(where, r, (k[0] or main, *k[1:])) for where, r, k in keyed]
    played, several = defaultdict(set), set()
    for _, r, key in keyed:
        played[key].add(r["env"])
        if len((r.get("selection") or {}).get("train_envs") or []) > 1:
            several.add(key[0])
    keyed = [(where, r, (k[0], k[1] if k[0] in several and k[1] in played[k] else None, k[2], k[3]))
             for where, r, k in keyed]
    rows = defaultdict(lambda: defaultdict(list))
    seen, selected = {}, {}
    for where, r, key in keyed:
        label = key[2]
        episode = (key, r["env"], r["item_id"], "start" in r, r.get("start"))
        if episode in seen:
            name = episode_id(r["item_id"], r.get("start")) if "start" in r else r["item_id"]
            raise RecordError(f"{where}: episode {name!r} of label {label!r} is already at {seen[episode]}: "
                              f"each episode may count once")
        seen[episode] = where
        # one label, one selection (method and ratio); selector models may differ: they are rows of their own
        sel, same = selection_key(r.get("selection"), where), key[:3]
        if same in selected and (selected[same][0] or ())[:2] != (sel or ())[:2]:
            raise RecordError(f"{where}: label {label!r} has the selection {sel} here and "
                              f"{selected[same][0]} at {selected[same][1]}: one row, one selection")
        selected.setdefault(same, (sel, where))
        rows[key][r["env"]].append(r)
    return main, rows


def row_names(keys, main, backbones=False):
    """{key: the row's name}: its label, plus what tells it from another row of the same label among `keys` (the
    selector model, a backbone other than the main one (always with `backbones`), the env of a single-task
    model)."""
    out = {}
    for key in keys:
        backbone, scope, label, model = key
        same = [k for k in keys if k[2] == label and k != key]
        other = backbone != main and (backbones or any(k[0] != backbone for k in same))
        out[key] = (label + (f" [{model}]" if any(k[3] != model for k in same) else "")
                    + (f" [{backbone}]" if other else "")
                    + (f" [{scope} only]" if scope and any(k[1] != scope for k in same) else ""))
    return out


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


def labels_by_method(what):
    """({method: {ratio: [names]}} of the rows whose label or selection says what they are (row_of), [the names
    of the others]); `what` is {name: (method, ratio) or None}."""
    by_method = defaultdict(lambda: defaultdict(list))
    for name, p in what.items():
        if p is not None:
            by_method[p[0]][p[1]].append(name)
    return by_method, [name for name, p in what.items() if p is None]
