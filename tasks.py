"""Which tasks an evaluation plays: a task-id range, or a task file (one id per line; AgentEval's test files and
AgentTraj-L as JSON lists or JSONL of records with an "item_id"), read with the one item-id rule
(trajectory.split_item_id, re-exported here: it knows AgentGym's env prefixes, "lmrlgym_maze_3", "tool_weather_5").
Shared by evaluate.py and the driver's scripts; standard library only.
"""
import json
import os
import re
from collections import Counter

from trajectory import RecordError, env_task, split_item_id  # noqa: F401  (split_item_id: re-exported)


def task_range(text):
    """--tasks A:B as a range; ValueError (one line) unless 0 <= A < B."""
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"--tasks must be A:B (a half-open range of task ids), got {text!r}") from None
    if not 0 <= a < b:
        raise ValueError(f"--tasks {text}: an empty or negative range (need 0 <= A < B)")
    return range(a, b)


def read_task_file(path, env_name):
    """(task ids of `env_name`, Counter of the other envs' ids skipped) from a task file (see the docstring)."""
    entries = task_file_entries(path)
    if not entries:
        raise RecordError(f"{path}: the task file is empty")
    ids, first, other = [], {}, Counter()
    for where, x in entries:
        env, task = entry_task(x, env_name, f"{path}: {where}")
        if env != env_name:
            other[env] += 1
            continue
        if task in first:
            raise RecordError(f"{path}: {where}: duplicate task {env}_{task} (first at {first[task]})")
        first[task] = where
        ids.append(task)
    if not ids:
        raise RecordError(f"{path}: no task of env {env_name!r} (the file holds "
                          f"{', '.join(f'{e} {n}' for e, n in other.most_common())})")
    return ids, other


def task_file_entries(path):
    """[(where, entry)] of a task file: a JSON list's items, a JSONL file's objects, or a plain file's lines."""
    if os.path.isdir(path):
        raise RecordError(f"{path}: is a folder, not a task file")
    if not os.path.exists(path):
        raise RecordError(f"{path}: no such task file")
    try:
        text = open(path, encoding="utf-8").read()
    except UnicodeDecodeError as e:
        raise RecordError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    body = text.lstrip()
    if body.startswith("["):
        try:
            return [(f"record {n}", x) for n, x in enumerate(json.loads(text), 1)]
        except json.JSONDecodeError as e:
            raise RecordError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
        except RecursionError:
            raise RecordError(f"{path}: JSON nested too deeply") from None
    entries, lines = [], text.splitlines()
    if not body.startswith("{") and text and not text.endswith("\n") and lines[-1].strip():
        # "10" may be the first half of "1050": a file still being written (or cut) would add a task it never held
        raise RecordError(f"{path}: line {len(lines)}: {lines[-1].strip()[:40]!r} has no newline at the end (a file "
                          f"still being written, or cut?); end the file with a newline")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if body.startswith("{"):  # JSONL of records
            try:
                line = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as e:
                raise RecordError(f"{path}: line {n}: not valid JSON ({getattr(e, 'msg', 'nested too deeply')})") \
                    from None
        entries.append((f"line {n}", line))
    return entries


def entry_task(x, env_name, where):
    """(env, task id) of one task-file entry: a task id of `env_name`, an item id, or a record (an object with an
    item_id, and maybe its own task_id: trajectory.env_task)."""
    if isinstance(x, dict):
        if "item_id" not in x:
            raise RecordError(f"{where}: no 'item_id'")
        try:
            return env_task(x)
        except ValueError as e:
            raise RecordError(f"{where}: not a task id ({e})") from None
    try:
        if isinstance(x, bool) or not isinstance(x, (int, str)):
            raise ValueError(f"expected a task id or an item id, got {x!r}")
        x = x.strip() if isinstance(x, str) else x
        return (env_name, int(x)) if isinstance(x, int) or re.fullmatch(r"-?\d+", x) else split_item_id(x)
    except ValueError as e:
        raise RecordError(f"{where}: not a task id ({e})") from None
