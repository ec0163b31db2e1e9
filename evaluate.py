"""Evaluate an agent (ReAct, AgentGym-style) on built-in environments or AgentGym environment servers, run the
paper's critical-step verification (Table 6), and print Tables 1, 2, 3 and 6 from the results.

Built-in environments (no server; test ids from data/<env>_test_ids.txt unless --tasks/--task-file is given):
    python evaluate.py --env maze --policy expert --output results/expert_maze.jsonl
    python evaluate.py --env babyai --policy expert --tasks 1000:1200 --output runs/babyai_train.jsonl \\
        --save-trajectories data/babyai_train.jsonl --success-only          # make expert training data
An AgentGym server, AgentEval's test tasks, and a fine-tuned model served by vLLM (`vllm serve out/atlas --port 8000`):
    python evaluate.py --env webshop --env-server http://127.0.0.1:36001 --task-file AgentEval/webshop_test.json \\
        --policy openai --model out/atlas --concurrency 32 --label critical@0.3 --output results/atlas_webshop.jsonl
    (--instruction-from AgentTraj-L.json overrides a server env's AgentGym 2024 prompt with the data's own)
A local transformers model, all running episodes generated in one batch:
    python evaluate.py --env wordle --policy hf --model out/atlas --concurrency 16 --label critical@0.3 \\
        --output results/atlas_wordle.jsonl
Table 6 (critical-step verification): the base model restarted right after each critical step of a selection file
    python evaluate.py --from-critical out/atlas.jsonl --policy hf --model Llama-3.1-8B-Instruct --label base \\
        --output results/table6_base.jsonl
The report (Tables 1, 2, 3, 6, with episode counts, 95 % intervals, and bar charts on a 0-100 axis):
    python evaluate.py --report results/*.jsonl --report-png results/table1.png

Task files (--task-file): one task id (or item id) per line, or a JSON list / JSONL of objects with an "item_id"
(AgentEval's test files `[{"item_id": "webshop_5238", ...}]`, AgentTraj-L files); item ids may carry an env prefix
("lmrlgym_maze_3", "tool_weather_5"). Only the ids of --env are taken; the others are counted and reported.

Labels (--label) name the training method and ratio, so that --report can lay out Tables 2 and 3:
    base               the model before fine-tuning          complete           all steps (AgentTraj-L, 100 %)
    critical@M         ATLaS critical steps at ratio M       noncritical@M      the complement (Table 2)
    random@M           random steps at ratio M (Table 3)     perplexity@M, value@M   the oracle-free selectors
  e.g. --label critical@0.3. Any other label appears in Table 1 only. Use one set of files per backbone.

Results JSONL: one line per episode (item_id, env, task_id, reward, success 0/1, rounds, end, format_errors,
error, seconds, label; with --from-critical also start = the critical step's conversation index, or null for the
from-scratch episode, and episode = "<item_id>@<start>"). Reruns skip the episodes already in --output (resumable);
a rerun with other settings (env, policy, model, label, temperature, rounds, context, ...) is refused unless
--force. One process writes an output at a time. --save-trajectories writes the episodes as AgentTraj-L records.
Scores: Babyai, Sciworld and Sheet are mean rewards x100 (x1 for Sciworld's 0..100), PDDL and Jericho progress
rates x100 (a result's "progress" field, else its reward), the others success rates, as in AgentGym and the paper.
"""
import argparse
import glob
import json
import math
import os
import re
import time
from collections import Counter, defaultdict

from tqdm import tqdm

import agent
from envs import BUILTIN, MAX_ROUNDS, make_env
from runs import OutputBusy, append_record, keep_config, lock_output, open_resumable
from trajectory import RecordError, iter_records, step_indices, validate_record

HELD_IN = ["alfworld", "babyai", "maze", "movie", "sciworld", "textcraft", "todo", "weather", "webshop", "wordle"]
HELD_OUT = ["academia", "sheet", "jericho", "pddl"]
COLUMN = {"alfworld": "Alfworld", "babyai": "Babyai", "maze": "Maze", "movie": "Movie", "sciworld": "Sciworld",
          "textcraft": "Textcraft", "todo": "Todo", "weather": "Weather", "webshop": "Webshop", "wordle": "Wordle",
          "academia": "Academic", "sheet": "Sheet", "jericho": "Jericho", "pddl": "PDDL"}
# AgentGym (and the paper's Table 1) reports the mean reward where the reward is dense, the progress rate on
# AgentBoard's PDDL and Jericho, and the success rate elsewhere. Scale to 0..100 (SciWorld's score already is).
DENSE = {"babyai": 100.0, "sciworld": 1.0, "sheet": 100.0, "pddl": 100.0, "jericho": 100.0}
LOWEST = {"sciworld": -100.0}  # a score's lowest value on the 0..100 scale where it is not 0 (ScienceWorld's
#                                 score goes negative when the agent fails the task)
PROGRESS = {"pddl", "jericho"}  # scored by the result's "progress" field when it has one, else its reward
KNOWN_ENVS = set(HELD_IN) | set(HELD_OUT) | set(MAX_ROUNDS) | set(BUILTIN)
METHODS = ("base", "complete", "critical", "noncritical", "random", "perplexity", "value")
Z95 = 1.959963984540054
# settings that change what an episode does: a rerun into the same output must keep them (or pass --force)
COMPARE = ("env", "env_server", "policy", "model", "label", "temperature", "max_rounds", "max_new_tokens",
           "max_context", "instruction_from", "from_critical", "dtype")


def get_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # ---- environment
    ap.add_argument("--env", help=f"environment: built-in {', '.join(BUILTIN)}; with --env-server any AgentGym "
                                  f"environment ({', '.join(MAX_ROUNDS)})")
    ap.add_argument("--env-server", default=None, help="AgentGym environment server URL (default: built-in env)")
    ap.add_argument("--tasks", default=None, help="half-open range of task ids A:B (default for built-in envs: "
                                                  "the ids in data/<env>_test_ids.txt)")
    ap.add_argument("--task-file", default=None, help="task ids: one per line, or a JSON list / JSONL of objects "
                    "with item_id (AgentEval, AgentTraj-L; env prefixes such as lmrlgym_maze_ are understood)")
    ap.add_argument("--max-rounds", type=int, default=None, help="assistant turns per episode (default: AgentGym's "
                                                                 "max rounds for the env)")
    ap.add_argument("--instruction-from", default=None, help="AgentTraj-L file: take the env's instruction prompt "
                                                             "from the first record whose item_id starts with it")
    # ---- Table 6
    ap.add_argument("--from-critical", default=None, metavar="SELECTION.jsonl",
                    help="Table 6: for every record of this selection file (item_id gives env and task) run one "
                         "episode per critical step c (the record's assistant turns up to and including c are "
                         "replayed, then the policy continues) plus one from-scratch episode. The report combines "
                         "the restarts of a task by the mean over all restart episodes (each restart counts once) "
                         "and prints the per-task best (success if any restart succeeds) beside it")
    # ---- policy
    ap.add_argument("--policy", default="expert", choices=["expert", "openai", "hf"], help="who acts")
    ap.add_argument("--model", default=None, help="openai: served model name; hf: model folder")
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="openai: server URL")
    ap.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "EMPTY"),
                    help="openai: API key (default $OPENAI_API_KEY; never written to any file)")
    ap.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0 = greedy, as AgentGym)")
    ap.add_argument("--max-new-tokens", type=int, default=512, help="tokens per assistant turn")
    ap.add_argument("--max-context", type=int, default=4096, help="prompt + answer tokens at most (AgentGym: 4096); "
                                                                  "0: no limit of ours (openai: the server's)")
    ap.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"],
                    help="hf: weights dtype (auto: bf16 where the hardware has it natively, else float32)")
    ap.add_argument("--request-timeout", type=float, default=120.0, help="openai: seconds per request")
    # ---- run
    ap.add_argument("--concurrency", type=int, default=8, help="episodes run at once (batch size for hf)")
    ap.add_argument("--output", default=None, help="results JSONL (appended; done episodes are skipped)")
    ap.add_argument("--save-trajectories", default=None, help="also write AgentTraj-L records here")
    ap.add_argument("--success-only", action="store_true", help="save only successful trajectories")
    ap.add_argument("--label", default=None, help="row name in --report: base, complete, critical@M, "
                    "noncritical@M, random@M, perplexity@M, value@M (see above; default: the model, or the policy)")
    ap.add_argument("--force", action="store_true", help="append to an output made with other settings")
    # ---- report
    ap.add_argument("--report", nargs="+", default=None, help="result files (globs ok): print the tables and stop")
    ap.add_argument("--report-png", default="results/table1.png", help="where --report saves the Table-1 chart "
                    "(Tables 3 and 6 go beside it as <name>_table3.png, <name>_table6.png)")
    ap.add_argument("--held-out", default=None, help="--report: comma-separated envs the run did not train on, "
                    "shown under held-out next to the paper's academia, sheet, jericho, pddl (the split is then not "
                    "the paper's: its AVG is marked AVG*)")
    args = ap.parse_args(argv)
    if args.report is None:  # --report only reads result files: the checks of a run do not apply
        check_args(ap, args)
    return args


def check_args(ap, args):
    """One usage error (ap.error) for flags that cannot go together or name the wrong kind of path."""
    if args.output is None or (args.env is None and args.from_critical is None):
        ap.error("--env and --output are required (or --from-critical and --output, or --report FILES)")
    if args.max_context < 0:
        ap.error(f"--max-context must be >= 0 (0: no limit of ours), got {args.max_context}")
    for name in ("concurrency", "max_new_tokens", "max_rounds"):
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if not args.temperature >= 0:
        ap.error(f"--temperature must be >= 0, got {args.temperature}")
    if args.from_critical and (args.tasks or args.task_file or args.save_trajectories):
        ap.error("--from-critical takes its tasks from the selection file: no --tasks, --task-file, "
                 "--save-trajectories")
    if args.tasks and args.task_file:
        ap.error("give --tasks or --task-file, not both")
    if args.tasks is not None:
        try:
            task_range(args.tasks)
        except ValueError as e:
            ap.error(str(e))
    for path in (args.output, args.save_trajectories):
        if path is not None and (os.path.isdir(path) or path.endswith(os.sep)):
            ap.error(f"{path}: is a folder; --output and --save-trajectories name files")
    inputs = {"--task-file": args.task_file, "--from-critical": args.from_critical,
              "--instruction-from": args.instruction_from}
    for flag, path in [("--output", args.output), ("--save-trajectories", args.save_trajectories)]:
        for name, inp in inputs.items():
            if path and inp and os.path.abspath(path) == os.path.abspath(inp):
                ap.error(f"{flag} {path} is the input ({name}): write the results to another file")
    if args.save_trajectories and os.path.abspath(args.save_trajectories) == os.path.abspath(args.output):
        ap.error("--save-trajectories must differ from --output")


# ----------------------------------------------------------------------------- tasks and policy

def task_range(text):
    """--tasks A:B as a range; ValueError (one line) unless 0 <= A < B."""
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"--tasks must be A:B (a half-open range of task ids), got {text!r}") from None
    if not 0 <= a < b:
        raise ValueError(f"--tasks {text}: an empty or negative range (need 0 <= A < B)")
    return range(a, b)


def split_item_id(item_id):
    """(env, task id) of an item id "<env>_<int>", also with the env prefix AgentEval and AgentTraj-L use for some
    envs ("lmrlgym_maze_3" -> ("maze", 3), "tool_weather_5" -> ("weather", 5)). Raises ValueError."""
    head, _, tail = str(item_id).rpartition("_")
    if not head or not re.fullmatch(r"-?\d+", tail):
        raise ValueError(f"item_id {item_id!r} is not <env>_<task id>")
    if head not in KNOWN_ENVS and head.rpartition("_")[2] in KNOWN_ENVS:
        head = head.rpartition("_")[2]
    return head, int(tail)


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
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
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
    """(env, task id) of one task-file entry: a task id of `env_name`, an item id, or an object with an item_id."""
    if isinstance(x, dict):
        if "item_id" not in x:
            raise RecordError(f"{where}: no 'item_id'")
        x = x["item_id"]
    try:
        if isinstance(x, bool) or not isinstance(x, (int, str)):
            raise ValueError(f"expected a task id or an item id, got {x!r}")
        x = x.strip() if isinstance(x, str) else x
        return (env_name, int(x)) if isinstance(x, int) or re.fullmatch(r"-?\d+", x) else split_item_id(x)
    except ValueError as e:
        raise RecordError(f"{where}: not a task id ({e})") from None


def task_list(env, name, tasks=None, task_file=None, env_server=None):
    """The task ids to run on env `name` (`env` an instance of it): --tasks A:B, --task-file, or the built-in list."""
    path, other = task_file, Counter()
    if tasks is None and path is None:
        if env_server is not None:
            raise SystemExit(f"--tasks A:B or --task-file is required with --env-server (the {name} server "
                             f"knows its tasks)")
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", f"{name}_test_ids.txt")
    if path is not None:
        ids, other = read_task_file(path, name)
    else:
        ids = list(task_range(tasks))
    check_task_ids(env, name, ids)
    if other:
        print(f"{path}: {sum(other.values())} tasks of other envs left out "
              f"({', '.join(f'{e} {n}' for e, n in other.most_common())})")
    return ids


def check_task_ids(env, name, ids):
    valid = env.task_ids()
    if valid is not None:
        bad = [i for i in ids if i not in valid]
        if bad:
            raise SystemExit(f"{name}: task ids out of range: {bad[:5]}{'...' if len(bad) > 5 else ''} "
                             f"(valid: {valid.start}..{valid.stop - 1})" if isinstance(valid, range) else
                             f"{name}: unknown task ids {bad[:5]}")


def make_policy(args):
    if args.policy == "expert":
        if args.env_server:
            raise SystemExit("--policy expert needs a built-in environment (no expert over HTTP)")
        return agent.ExpertPolicy()
    try:  # one place for every stage's policy settings, checked before any weight loads (decoding pinned there)
        return agent.make_policy(args.policy, model=args.model, base_url=args.base_url, api_key=args.api_key,
                                 max_new_tokens=args.max_new_tokens, max_context=args.max_context,
                                 temperature=args.temperature, timeout=args.request_timeout, dtype=args.dtype)
    except (ValueError, OSError) as e:
        raise SystemExit(str(e).splitlines()[0] if str(e) else type(e).__name__) from None


def instruction_from(path, env_name):
    records = [rec for _, rec in iter_records(path)]  # the whole file is checked, not only up to the first match
    for rec in records:
        if str(rec["item_id"]).lower().startswith(env_name):
            return rec["conversations"][0]["value"]
    raise SystemExit(f"{path}: no record whose item_id starts with {env_name!r}")


def env_factory(name, env_server=None, instruction_path=None):
    """A function that makes env `name` (built-in, or served at `env_server`), tried once here."""
    env_kwargs = {}
    if instruction_path:
        env_kwargs["instruction"] = instruction_from(instruction_path, name)  # a bad file is named first
        if not env_server:
            raise SystemExit("--instruction-from is for --env-server environments (the built-ins have AgentGym's "
                             "instructions)")
    try:
        make_env(name, env_server, **env_kwargs).close()  # unknown env, unreachable server: one line
    except (ValueError, ConnectionError) as e:
        raise SystemExit(str(e)) from None
    return lambda: make_env(name, env_server, **env_kwargs)


# ----------------------------------------------------------------------------- evaluation

def open_output(args, config, key, policy=None):
    """Take the output's lock, check the settings against an earlier run's (keep_config), build the policy, and only
    then open the output: a run refused on the way leaves no empty output or config behind."""
    cfg_path = args.output + ".config.json"
    had = os.path.exists(cfg_path) or os.path.exists(args.output)
    locks = [lock_output(args.output)]
    try:
        if args.save_trajectories:  # a second run saving into the same records would duplicate them
            locks.append(lock_output(args.save_trajectories))
        keep_config(cfg_path, config, COMPARE, force=args.force)
        policy = policy or make_policy(args)
        done, out = open_resumable(args.output, key=key)
    except BaseException:
        if not had and os.path.exists(cfg_path) and not os.path.exists(args.output):
            os.remove(cfg_path)
        for lock in locks:
            lock.close()
        raise
    return locks, policy, done, out


def run(make, policy, jobs, out, label, name, *, concurrency, max_rounds, traj=None, traj_path=None, traj_done=(),
        success_only=False, extra=None):
    """Run `jobs` on env `name`, append one result line each to `out`; return the results (with conversations).
    With `traj` (the open --save-trajectories file `traj_path`) also write the episodes not in `traj_done` as
    records (only the successful ones with `success_only`)."""
    stats, skipped_invalid, t0, results = Counter(), 0, time.time(), []
    bar = tqdm(total=len(jobs), desc=name, unit="ep")
    try:
        for res in agent.run_episodes(make, policy, jobs, concurrency=concurrency, temperature=None,
                                      max_rounds=max_rounds, progress=bar):
            conv = res.pop("conversations")
            if traj is not None and res["item_id"] not in traj_done and (res["success"] or not success_only):
                rec = {"item_id": res["item_id"], "conversations": conv, "reward": res["reward"],
                       "success": res["success"]}
                try:
                    append_record(traj, validate_record(rec, traj_path))
                except RecordError as e:  # e.g. an empty model turn: counted and reported, never written
                    skipped_invalid += 1
                    tqdm.write(f"not saved: {e}")
            res["label"] = label
            if extra is not None:
                res.update(extra(res, res.pop("key")))
            append_record(out, res)
            results.append({**res, "conversations": conv})
            stats["episodes"] += 1
            stats["success"] += res["success"]
            stats[f"end_{res['end']}"] += 1
            stats["format_errors"] += res["format_errors"]
            bar.update(1)
            bar.set_postfix(success=f"{stats['success'] / stats['episodes']:.3f}", refresh=False)
    except (agent.PolicyError, ConnectionError) as e:
        raise SystemExit(f"stopped: {e}") from None
    finally:
        bar.close()
    secs = time.time() - t0
    print(f"{name}: this run {stats['episodes']} episodes in {secs:.1f}s ({stats['episodes'] / max(secs, 1e-9):.2f} "
          f"ep/s), ends { {k[4:]: v for k, v in stats.items() if k.startswith('end_')} }, malformed turns (no "
          f"'Action:') {stats['format_errors']}"
          + (f", trajectories not saved (invalid) {skipped_invalid}" if skipped_invalid else ""))
    return results


def default_label(args):
    return args.label or (os.path.basename(args.model.rstrip("/")) if args.model else args.policy)


def evaluate(args, policy=None):
    make = env_factory(args.env, env_server=args.env_server, instruction_path=args.instruction_from)
    probe = make()
    try:
        ids = task_list(probe, args.env, tasks=args.tasks, task_file=args.task_file, env_server=args.env_server)
    finally:
        probe.close()
    label = default_label(args)
    locks, policy, done, out = open_output(args, {**vars(args), "n_tasks": len(ids), "label": label}, "item_id",
                                           policy)
    traj_done, traj = open_resumable(args.save_trajectories) if args.save_trajectories else (set(), None)
    try:
        todo = [i for i in ids if f"{args.env}_{i}" not in done]
        print(f"{args.env}: {len(ids)} tasks, {len(ids) - len(todo)} already in {args.output}, running {len(todo)} "
              f"with --policy {args.policy} at concurrency {args.concurrency}")
        run(make, policy, [{"task_id": i} for i in todo], out, label, args.env, concurrency=args.concurrency,
            max_rounds=args.max_rounds, traj=traj, traj_path=args.save_trajectories, traj_done=traj_done,
            success_only=args.success_only)
    finally:
        out.close()
        if traj is not None:
            traj.close()
        for lock in locks:
            lock.close()
    rows = [json.loads(line) for line in open(args.output) if line.strip()]
    rows = [r for r in rows if r.get("env") == args.env and r.get("task_id") in set(ids)]
    n = len(rows)
    print(f"{args.env}: {n} episodes, success {sum(r['success'] for r in rows) / max(n, 1):.4f}, mean reward "
          f"{sum(r['reward'] for r in rows) / max(n, 1):.4f}")
    return rows


def critical_jobs(path, only_env=None):
    """{env: [jobs]} for --from-critical: per record one from-scratch job and one job per critical step c that
    replays the record's steps up to and including c. Jobs carry key = (source item_id, start)."""
    by_env, skipped, seen = defaultdict(list), Counter(), {}
    for n, rec in iter_records(path):
        where = f"{path}: record {n} (item_id {rec['item_id']!r})"
        if "critical_steps" not in rec:
            raise RecordError(f"{where}: no 'critical_steps' (not a selection file)")
        try:
            env, task = split_item_id(rec["item_id"])
        except ValueError as e:
            raise RecordError(f"{where}: {e}") from None
        if only_env is not None and env != only_env:
            skipped[env] += 1
            continue
        if (env, task) in seen:
            raise RecordError(f"{where}: task {env}_{task} again (first at record {seen[env, task]})")
        seen[env, task] = n
        conv, steps = rec["conversations"], step_indices(rec)
        by_env[env].append({"task_id": task, "key": (rec["item_id"], None)})
        for c in rec["critical_steps"]:
            by_env[env].append({"task_id": task, "key": (rec["item_id"], c),
                                "replay": [conv[s]["value"] for s in steps if s <= c]})
    if skipped:
        print(f"{path}: {sum(skipped.values())} records of other envs left out "
              f"({', '.join(f'{e} {k}' for e, k in skipped.most_common())})")
    if not by_env:
        raise RecordError(f"{path}: no record{' of env ' + repr(only_env) if only_env else ''} to start from")
    return by_env


def episode_id(item_id, start):
    return f"{item_id}@{'scratch' if start is None else start}"


def from_critical(args, policy=None):
    """Table 6: run every job of critical_jobs(); returns this run's results (with their conversations).
    `policy` (a policy object) replaces the one --policy names (tests)."""
    if args.env_server and not args.env:
        raise SystemExit("--from-critical with --env-server needs --env (one server serves one env)")
    by_env = critical_jobs(args.from_critical, args.env)
    makers = {}
    for name, jobs in by_env.items():
        makers[name] = env_factory(name, env_server=args.env_server, instruction_path=args.instruction_from)
        probe = makers[name]()
        try:
            check_task_ids(probe, name, sorted({j["task_id"] for j in jobs}))
        finally:
            probe.close()
    label = default_label(args)
    n = sum(len(j) for j in by_env.values())
    locks, policy, done, out = open_output(args, {**vars(args), "n_episodes": n, "label": label}, "episode", policy)
    results = []
    try:
        for name, jobs in by_env.items():
            todo = [j for j in jobs if episode_id(f"{name}_{j['task_id']}", j["key"][1]) not in done]
            print(f"{name}: {sum(j['key'][1] is None for j in jobs)} tasks, {len(jobs)} episodes (from scratch + one "
                  f"per critical step), {len(jobs) - len(todo)} already in {args.output}, running {len(todo)}")
            results += run(makers[name], policy, todo, out, label, name, concurrency=args.concurrency,
                           max_rounds=args.max_rounds,
                           extra=lambda res, key: {"start": key[1], "episode": episode_id(res["item_id"], key[1]),
                                                   "source_item_id": key[0]})
    finally:
        out.close()
        for lock in locks:
            lock.close()
    return results


# ----------------------------------------------------------------------------- the report: reading results

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
            by[label][r["env"]].append(r)
    return by


# ----------------------------------------------------------------------------- the report: numbers

def wilson(k, n, z=Z95):
    """Wilson score interval of a success rate k/n, as percentages."""
    if n == 0:
        return None
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(0.0, mid - half), 100 * min(1.0, mid + half)


def value(env, r):
    return r["progress"] if env in PROGRESS and r.get("progress") is not None else r["reward"]


def cell(env, rows):
    """The Table-1 number of one env on 0..100 with its 95 % interval: success rate with Wilson's interval, or
    (dense / progress envs) the mean with a normal-approximation interval (mean +- 1.96 s / sqrt(n))."""
    n = len(rows)
    if env in DENSE:
        xs = [DENSE[env] * value(env, r) for r in rows]
        mean = sum(xs) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
        lo = LOWEST.get(env, 0.0)
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
    head = [avg if c.startswith("avg_") else "AVG k/N" if c.startswith("part_") else COLUMN.get(c, c) for c in cols]
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
    missing = [COLUMN.get(e, e) for e in held_in + held_out if e not in cols_in + cols_out]
    print(f"{avg} only over every column of its split (held-in {len(held_in)}, held-out {len(held_out)} columns); "
          f"'AVG k/N' averages the k of N columns present and is not comparable to the paper's AVG."
          + (f" No results for {', '.join(missing)}." if missing else ""))
    if not paper:
        print("AVG*: --held-out changed the paper's split (held-in: the paper's 10 envs minus the named ones; "
              "held-out: the paper's 4 plus them).")


def table6(by, held_in, held_out):
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
    by_method, outside = labels_by_method(t1)
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
    t6 = table6(by, held_in, held_out)
    out["table6"] = t6
    if t6:
        print_table6(t6)
    out["charts"] = charts(args.report_png, t1, rows3, t6, held_in, held_out, out["table3"])
    return out


def labels_by_method(t1):
    """({method: {ratio: label}} of the labels that follow the --label convention, [the labels that do not])."""
    parsed = {label: parse_label(label) for label in t1}
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
    """Table 3: [(data, steps, label)] for complete, then random@m and critical@m from the largest m down."""
    return ([("Complete", "100%", by_method["complete"][m]) for m in [1.0] if m in by_method["complete"]]
            + [("Random", f"{m:.0%}", by_method["random"][m]) for m in sorted(by_method["random"], reverse=True)]
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
            print(f"{label:16}{COLUMN.get(env, env):10}" + "".join(f"{x:>28}" for x in cells)
                  + f"{c['replay_only']:>17}")
    print("n: episodes (from scratch and per-task best: one per task). 'ended in replay': restarts whose replayed "
          "expert turns already finished the episode (the policy took no turn).")


# ----------------------------------------------------------------------------- the report: charts

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
        out[png] = bars(png, [COLUMN.get(e, e) + ("*" if e in held_out else "") for e in envs],
             [(label, [s.get(e) for e in envs]) for label, s in t1.items()], "held-in and held-out (*) environments")
    if rows3:
        out[f"{stem}_table3{ext}"] = bars(f"{stem}_table3{ext}", [f"{d} {s}" for d, s, _ in rows3],
             [("held-in AVG", [t3[label]["in"] for _, _, label in rows3]),
              ("held-out AVG", [t3[label]["out"] for _, _, label in rows3])], "Table 3: random vs critical steps")
    if t6:
        keys = [(label, env) for label, envs in t6.items() for env in envs]
        out[f"{stem}_table6{ext}"] = bars(f"{stem}_table6{ext}", [f"{COLUMN.get(e, e)} ({label})" for label, e in keys],
             [(name, [t6[label][e][k] for label, e in keys]) for name, k in
              (("from scratch", "scratch"), ("from critical step (mean)", "critical"), ("per-task best", "best"))],
             "Table 6: from scratch vs from a critical step")
    return out


def main(argv=None):
    args = get_args(argv)
    try:
        if args.report is not None:
            return report(args)
        if args.from_critical is not None:
            return from_critical(args)
        return evaluate(args)
    except (RecordError, OutputBusy, OSError, ValueError) as e:
        raise SystemExit(f"evaluate.py: {e}") from None


if __name__ == "__main__":
    main()
