"""Evaluate an agent (ReAct, AgentGym-style) on built-in environments or AgentGym environment servers, run the
paper's critical-step verification (Table 6), and print the report (Tables 1-7, Figure 2: report.py) from the results.

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
The report (Tables 1, 2, 3, 6, with episode counts, 95 % intervals, and bar charts on a 0-100 axis): report.py
    python evaluate.py --report results/*.jsonl --report-png results/table1.png     # = python report.py ...

Task files (--task-file): one task id (or item id) per line, or a JSON list / JSONL of objects with an "item_id"
(AgentEval's test files `[{"item_id": "webshop_5238", ...}]`, AgentTraj-L files); item ids may carry an env prefix
("lmrlgym_maze_3", "tool_weather_5"). Only the ids of --env are taken; the others are counted and reported.

Rows of the report: a --model folder made by train.py holds selection.json (the training records' selection);
every result line carries it, and without --label the row is named from it ("critical@0.3", a fork's "toy@0.3").
--label names a row directly: base, complete, critical@M, noncritical@M, random@M, perplexity@M, value@M (see
report.py). One set of files per backbone.

Results JSONL: one line per episode (item_id, env, task_id, reward, success 0/1, rounds, end, format_errors,
error, seconds, label, selection when the model has one; with --from-critical also start = the critical step's
conversation index, or null for the from-scratch episode, and episode = "<item_id>@<start>"). Reruns skip the
episodes already in --output (resumable); a rerun with other settings (env, policy, model, label, temperature,
rounds, context, ...) is refused unless --force. One process writes an output at a time. --save-trajectories
writes the episodes as AgentTraj-L records.
Scores: Babyai, Sciworld and Sheet are mean rewards x100 (x1 for Sciworld's 0..100), PDDL and Jericho progress
rates x100 (a result's "progress" field, else its reward), the others success rates, as in AgentGym and the paper.
"""
import argparse
import errno
import json
import os
import sys
import time
from collections import Counter, defaultdict

from tqdm import tqdm

import agent
import runs
import tracking
from envs import BUILTIN, MAX_ROUNDS, make_env
from report import add_report_flags, report
from results import ROW_OF_METHOD, episode_id
from tasks import read_task_file, task_range
from runs import OutputBusy, append_record, open_resumable
from trajectory import (RecordError, env_task, iter_records, split_item_id, step_indices, template_kwargs,
                        validate_record)

# settings that change what an episode does: a rerun into the same output must keep them (or pass --force)
# (paths by what they name, runs.identity: a moved or copied output folder still resumes)
COMPARE = ("env", "env_server", "policy", "model_id", "label", "temperature", "max_rounds", "max_new_tokens",
           "max_context", "instruction_from_id", "from_critical_id", "agentboard_data_id", "dtype",
           "chat_template_kwargs")
PATHS = ("model", "instruction_from", "from_critical", "agentboard_data")


# ----------------------------------------------------------------------------- evaluation

def run(make, policy, jobs, out, label, name, *, concurrency, max_rounds, traj=None, traj_path=None, traj_done=(),
        success_only=False, extra=None, selection=None, backbone=None):
    """Run `jobs` on env `name`, append one result line each to `out`; return the results (with conversations).
    Every line carries `label`, and `selection` and `backbone` when given (the report's rows).
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
            if selection is not None:
                res["selection"] = selection
            if backbone is not None:
                res["backbone"] = backbone
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


def model_selection(args):
    """The selection a fine-tuned --model was trained on: train.py's selection.json in the model folder (the
    training records' selection.method, ratio and selector model), or None. Copied into every result line, so that
    the report names the row from the records."""
    path = os.path.join(args.model, "selection.json") if args.model and os.path.isdir(args.model) else None
    if path is None or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            sel = json.load(f)
    except (OSError, ValueError) as e:
        raise RecordError(f"{path}: cannot read the model's selection ({e})") from None
    if not isinstance(sel, dict) or not isinstance(sel.get("method"), str):
        raise RecordError(f"{path}: not a selection (an object with a 'method')")
    ratio = sel.get("ratio")
    if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float))):
        raise RecordError(f"{path}: 'ratio' must be a number or null, got {ratio!r}")
    return sel


def model_backbone(args, selection):
    """The base model a --policy hf row stands for (the report groups rows by it: Table 7, Figure 2): the
    backbone train.py named in selection.json (None in an older one), else the --model folder's own name (a base
    model); None for other policies."""
    if args.policy != "hf" or not args.model:
        return None
    if selection is not None:
        return selection.get("backbone")
    return os.path.basename(os.path.normpath(args.model))


def default_label(args, selection=None):
    """--label, else the row the model's selection names ("<method>@<ratio>", ATLaS's oracle as critical and the
    complement as noncritical; "complete"), else the model folder's name, else the policy."""
    if args.label:
        return args.label
    if selection is not None:
        method = ROW_OF_METHOD.get(selection["method"], selection["method"])
        ratio = selection.get("ratio")
        return method if method == "complete" or ratio is None else f"{method}@{ratio:g}"
    return os.path.basename(args.model.rstrip("/")) if args.model else args.policy


def evaluate(args, policy=None, make=None):
    """One env's evaluation; `make` (env_factory's) when the caller has made it already (evaluate_envs)."""
    make = make or env_factory(args.env, env_server=args.env_server, instruction_path=args.instruction_from)
    probe = make()
    try:
        ids = task_list(probe, args.env, tasks=args.tasks, task_file=args.task_file, env_server=args.env_server)
    finally:
        probe.close()
    selection = model_selection(args)
    label = default_label(args, selection)
    output = open_output(args, {**vars(args), "n_tasks": len(ids), "label": label, "selection": selection}, "item_id",
                         policy)
    policy, done, out = output.prepared, output.done, output.file
    traj_done, traj = open_resumable(args.save_trajectories) if args.save_trajectories else (set(), None)
    try:
        todo = [i for i in ids if f"{args.env}_{i}" not in done]
        print(f"{args.env}: {len(ids)} tasks, {len(ids) - len(todo)} already in {args.output}, running {len(todo)} "
              f"with --policy {args.policy} at concurrency {args.concurrency}")
        run(make, policy, [{"task_id": i} for i in todo], out, label, args.env, concurrency=args.concurrency,
            max_rounds=args.max_rounds, traj=traj, traj_path=args.save_trajectories, traj_done=traj_done,
            success_only=args.success_only, selection=selection, backbone=model_backbone(args, selection))
    finally:
        output.close()
        if traj is not None:
            traj.close()
    rows = [json.loads(line) for line in open(args.output) if line.strip()]
    rows = [r for r in rows if r.get("env") == args.env and r.get("task_id") in set(ids)]
    n = len(rows)
    summary = {f"{args.env}/episodes": n, f"{args.env}/success_rate": sum(r["success"] for r in rows) / max(n, 1),
               f"{args.env}/mean_reward": sum(r["reward"] for r in rows) / max(n, 1)}
    print(f"{args.env}: {n} episodes, success {summary[f'{args.env}/success_rate']:.4f}, mean reward "
          f"{summary[f'{args.env}/mean_reward']:.4f}")
    if args.report_to != "none":  # the row's scores on this env, under the row's name (tracking.py)
        trackers = tracking.Trackers(tracking.parse(args.report_to), os.path.dirname(os.path.abspath(args.output)),
                                     f"{label} {args.env}", output.config)
        for i, r in enumerate(sorted(rows, key=lambda r: r["task_id"])):
            trackers.log({f"{args.env}/reward": r["reward"], f"{args.env}/success": r["success"]}, i)
        trackers.log(summary, n)
        trackers.close()
    return rows


def evaluate_envs(args):
    """--env A,B,...: each env in turn, as its own evaluate.py run would (its own output, settings, resume), with
    one policy made once (an hf model loads once for all of them). {env} in --output, --task-file and
    --save-trajectories names each env's file; --env-server gives ENV=URL pairs."""
    names = [e.strip() for e in args.env.split(",") if e.strip()]
    servers = dict(kv.split("=", 1) for kv in (args.env_server or "").split(",") if "=" in kv)
    if args.env_server and any("=" not in kv for kv in args.env_server.split(",")):
        raise SystemExit("evaluate.py: with several --env, --env-server is ENV=URL pairs, comma-separated")
    if "{env}" not in args.output:
        raise SystemExit("evaluate.py: with several --env, --output must name each env's file with {env}, e.g. "
                         "results/critical@0.3_{env}.jsonl")
    for flag in ("task_file", "save_trajectories"):
        if getattr(args, flag) and "{env}" not in getattr(args, flag):
            raise SystemExit(f"evaluate.py: with several --env, --{flag.replace('_', '-')} must contain {{env}}")
    runs_of = [argparse.Namespace(**{**vars(args), "env": e, "env_server": servers.get(e),
                                     **{k: getattr(args, k).replace("{env}", e) for k in
                                        ("output", "task_file", "save_trajectories") if getattr(args, k)}})
               for e in names]
    # every env's flags are checked (and its env made once) before the model loads
    makers = [env_factory(a.env, env_server=a.env_server, instruction_path=a.instruction_from) for a in runs_of]
    policy = make_policy(args)
    return {a.env: evaluate(a, policy, make) for a, make in zip(runs_of, makers)}


def critical_jobs(path, only_env=None):
    """{env: [jobs]} for --from-critical: per record one from-scratch job and one job per critical step c that
    replays the record's steps up to and including c. Jobs carry key = (source item_id, start)."""
    by_env, skipped, seen = defaultdict(list), Counter(), {}
    for n, rec in iter_records(path):
        where = f"{path}: record {n} (item_id {rec['item_id']!r})"
        if "critical_steps" not in rec:
            raise RecordError(f"{where}: no 'critical_steps' (not a selection file)")
        try:
            env, task = env_task(rec)  # the record's own task_id, when it has one
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
    selection = model_selection(args)
    label = default_label(args, selection)
    n = sum(len(j) for j in by_env.values())
    output = open_output(args, {**vars(args), "n_episodes": n, "label": label, "selection": selection}, "episode",
                         policy)
    policy, done, out = output.prepared, output.done, output.file
    results = []
    try:
        for name, jobs in by_env.items():
            todo = [j for j in jobs if episode_id(f"{name}_{j['task_id']}", j["key"][1]) not in done]
            print(f"{name}: {sum(j['key'][1] is None for j in jobs)} tasks, {len(jobs)} episodes (from scratch + one "
                  f"per critical step), {len(jobs) - len(todo)} already in {args.output}, running {len(todo)}")
            results += run(makers[name], policy, todo, out, label, name, concurrency=args.concurrency,
                           max_rounds=args.max_rounds,
                           extra=lambda res, key: {"start": key[1], "episode": episode_id(res["item_id"], key[1]),
                                                   "source_item_id": key[0]},
                           selection=selection, backbone=model_backbone(args, selection))
    finally:
        output.close()
    return results


def open_output(args, config, key, policy=None):
    """The results file, opened (runs.open_output: lock, settings check, resume), with the policy built only once
    the output is sure to be ours (.prepared): a run refused on the way leaves no empty output or config behind."""
    config = {**config, **{f"{k}_id": runs.identity(getattr(args, k)) for k in PATHS},
              "chat_template_kwargs": template_kwargs(args.chat_template_kwargs)}
    return runs.open_output(args.output, config, COMPARE, force=args.force, key=key,
                            also_lock=[args.save_trajectories], prepare=lambda done: policy or make_policy(args))


# ----------------------------------------------------------------------------- options

def get_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # ---- environment
    ap.add_argument("--env", help=f"environment: built-in {', '.join(BUILTIN)}; with --env-server any AgentGym "
                                  f"environment ({', '.join(MAX_ROUNDS)}). Several, comma-separated, are played "
                                  "one after the other by one policy loaded once; then --output (and --task-file, "
                                  "--save-trajectories) name each env's file with {env}")
    ap.add_argument("--env-server", default=None, help="AgentGym environment server URL (default: built-in env); "
                    "with several --env, ENV=URL pairs, comma-separated, for the served ones")
    ap.add_argument("--agentboard-data", default=os.environ.get("ATLAS_AGENTBOARD_DATA"), metavar="DIR",
                    help="AgentBoard's data folder, unpacked inside a clone of AgentBoard's code, for the held-out "
                         "jericho and pddl (default: $ATLAS_AGENTBOARD_DATA; docs/ENVIRONMENTS.md)")
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
    ap.add_argument("--report-to", default="none", help="also show each episode's score and the env's success rate "
                    "in trackers: none, or a comma-separated list of tensorboard, wandb, trackio (tracking.py)")
    ap.add_argument("--chat-template-kwargs", default=None,
                    help="template variables for every render of the chat template, as JSON (e.g. "
                    "'{\"enable_thinking\": false}' for Qwen3); give train.py, perplexity.py, evaluate.py and "
                    "value_estimate.py the same")
    # ---- run
    ap.add_argument("--concurrency", type=int, default=8, help="episodes run at once (batch size for hf)")
    ap.add_argument("--output", default=None, help="results JSONL (appended; done episodes are skipped)")
    ap.add_argument("--save-trajectories", default=None, help="also write AgentTraj-L records here")
    ap.add_argument("--success-only", action="store_true", help="save only successful trajectories")
    ap.add_argument("--label", default=None, help="row name in --report: base, complete, critical@M, "
                    "noncritical@M, random@M, perplexity@M, value@M (see above; default: the model, or the policy)")
    ap.add_argument("--force", action="store_true", help="append to an output made with other settings")
    # ---- report (report.py)
    ap.add_argument("--report", nargs="+", default=None, help="result files (globs ok): print the tables and stop "
                    "(the same as python report.py FILES)")
    add_report_flags(ap)
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
    try:  # an unknown tracker or a missing package: refused before anything runs
        tracking.parse(args.report_to)
    except ValueError as e:
        ap.error(str(e))
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


# ----------------------------------------------------------------------------- tasks (tasks.py) and policy

def task_list(env, name, tasks=None, task_file=None, env_server=None):
    """The task ids to run on env `name` (`env` an instance of it): --tasks A:B, --task-file, or the built-in list."""
    path, other = task_file, Counter()
    if tasks is None and path is None:
        if env_server is not None:
            raise SystemExit(f"--tasks A:B or --task-file is required with --env-server (the {name} server "
                             f"knows its tasks)")
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", f"{name}_test_ids.txt")
        if not os.path.exists(path) and env.task_ids() is not None:  # AgentBoard's envs: every task of its data
            path, tasks = None, f"0:{len(env.task_ids())}"
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
                                 temperature=args.temperature, timeout=args.request_timeout, dtype=args.dtype,
                                 template_kwargs=template_kwargs(args.chat_template_kwargs))
    except (ValueError, OSError) as e:
        raise SystemExit(str(e).splitlines()[0] if str(e) else type(e).__name__) from None


def instruction_from(path, env_name):
    """The instruction (first turn) of the first record of env `env_name` in an AgentTraj-L file, the env of each
    record by the item-id rule (lmrlgym_maze_3 is maze). The whole file is checked, not only up to the first match:
    an item_id the rule cannot read is an error naming the record."""
    found, other = None, Counter()
    for n, rec in iter_records(path):
        try:
            env = split_item_id(rec["item_id"])[0]
        except ValueError as e:
            raise RecordError(f"{path}: record {n}: {e}") from None
        if env != env_name:
            other[env] += 1
        elif found is None:
            found = rec["conversations"][0]["value"]
    if found is None:
        raise RecordError(f"{path}: no record of env {env_name!r} to take its instruction from (the file holds "
                          f"{', '.join(f'{e} {k}' for e, k in other.most_common())})")
    return found


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


def main(argv=None):
    args = get_args(argv)
    if args.agentboard_data:  # the envs read it from the environment (envs/agentboard.py)
        os.environ["ATLAS_AGENTBOARD_DATA"] = os.path.abspath(args.agentboard_data)
    try:
        if args.report is not None:
            return report(args)
        if args.from_critical is not None:
            return from_critical(args)
        if "," in args.env or "{env}" in args.output:  # several envs, or one named by the pattern
            return evaluate_envs(args)
        return evaluate(args)
    except KeyboardInterrupt:  # the episodes written so far are complete lines; the running ones are redone
        print("evaluate.py: interrupted; the episodes written are kept: rerun the same command to resume",
              file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise SystemExit(f"evaluate.py: {e}") from None
        raise SystemExit(f"evaluate.py: {e.filename or args.output}: {e.strerror}; the episodes written are kept: "
                         f"free space and rerun the same command to resume") from None
    except (RecordError, OutputBusy, ValueError) as e:
        raise SystemExit(f"evaluate.py: {e}") from None


if __name__ == "__main__":
    main()
