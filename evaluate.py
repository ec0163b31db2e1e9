"""Evaluate an agent (ReAct, AgentGym-style) on built-in environments or AgentGym environment servers, and print
the paper's Table 1 from the results.

Built-in environments (no server; test ids from data/<env>_test_ids.txt unless --tasks is given):
    python evaluate.py --env maze --policy expert --output results/expert_maze.jsonl
    python evaluate.py --env babyai --policy expert --tasks 1000:1200 --output runs/babyai_train.jsonl \\
        --save-trajectories data/babyai_train.jsonl --success-only          # make expert training data
An AgentGym server and a fine-tuned model served by vLLM (`vllm serve out/atlas --port 8000`):
    python evaluate.py --env webshop --env-server http://127.0.0.1:36001 --tasks 0:200 --policy openai \\
        --model out/atlas --base-url http://127.0.0.1:8000/v1 --concurrency 32 --output results/atlas_webshop.jsonl
    (tool environments also need --instruction-from AgentTraj-L.json: their prompts are taken from the data)
A local transformers model, all running episodes generated in one batch:
    python evaluate.py --env wordle --policy hf --model out/atlas --concurrency 16 --output results/atlas_wordle.jsonl
Table 1 (held-in / held-out columns, averages) and a bar chart from any number of result files:
    python evaluate.py --report results/*.jsonl --report-png results/table1.png

Results JSONL: one line per episode (item_id, env, task_id, reward, success 0/1, rounds, end, format_errors,
error, seconds, label). Reruns skip the item_ids already in --output (resumable). --save-trajectories writes the
episodes as AgentTraj-L records (validated with trajectory.validate_record).
"""
import argparse
import glob
import json
import os
import sys
import time
from collections import Counter, defaultdict

from tqdm import tqdm

import agent
from envs import BUILTIN, MAX_ROUNDS, make_env
from trajectory import RecordError, append_record, iter_records, open_resumable, validate_record

HELD_IN = ["alfworld", "babyai", "maze", "movie", "sciworld", "textcraft", "todo", "weather", "webshop", "wordle"]
HELD_OUT = ["academia", "sheet", "jericho", "pddl"]
COLUMN = {"alfworld": "Alfworld", "babyai": "Babyai", "maze": "Maze", "movie": "Movie", "sciworld": "Sciworld",
          "textcraft": "Textcraft", "todo": "Todo", "weather": "Weather", "webshop": "Webshop", "wordle": "Wordle",
          "academia": "Academic", "sheet": "Sheet", "jericho": "Jericho", "pddl": "PDDL"}
# AgentGym (and the paper's Table 1) reports the mean reward where the reward is dense, the success rate elsewhere.
DENSE = {"babyai": 100.0, "sciworld": 1.0, "sheet": 100.0}  # scale to 0..100 (SciWorld's score already is)


def get_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # ---- environment
    ap.add_argument("--env", help=f"environment: built-in {', '.join(BUILTIN)}; with --env-server any AgentGym "
                                  f"environment ({', '.join(MAX_ROUNDS)})")
    ap.add_argument("--env-server", default=None, help="AgentGym environment server URL (default: built-in env)")
    ap.add_argument("--tasks", default=None, help="half-open range of task ids A:B (default for built-in envs: "
                                                  "the ids in data/<env>_test_ids.txt)")
    ap.add_argument("--task-file", default=None, help="file with one task id per line (instead of --tasks)")
    ap.add_argument("--max-rounds", type=int, default=None, help="assistant turns per episode (default: AgentGym's "
                                                                 "max rounds for the env)")
    ap.add_argument("--instruction-from", default=None, help="AgentTraj-L file: take the env's instruction prompt "
                                                             "from the first record whose item_id starts with it")
    # ---- policy
    ap.add_argument("--policy", default="expert", choices=["expert", "openai", "hf"], help="who acts")
    ap.add_argument("--model", default=None, help="openai: served model name; hf: model folder")
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="openai: server URL")
    ap.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "EMPTY"), help="openai: API key")
    ap.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0 = greedy, as AgentGym)")
    ap.add_argument("--max-new-tokens", type=int, default=512, help="tokens per assistant turn")
    ap.add_argument("--max-context", type=int, default=4096, help="hf: stop an episode whose prompt reaches this "
                                                                  "many tokens (AgentGym: 4096)")
    ap.add_argument("--request-timeout", type=float, default=120.0, help="openai: seconds per request")
    # ---- run
    ap.add_argument("--concurrency", type=int, default=8, help="episodes run at once (batch size for hf)")
    ap.add_argument("--output", default=None, help="results JSONL (appended; done item_ids are skipped)")
    ap.add_argument("--save-trajectories", default=None, help="also write AgentTraj-L records here")
    ap.add_argument("--success-only", action="store_true", help="save only successful trajectories")
    ap.add_argument("--label", default=None, help="row name in --report (default: the model, or the policy)")
    # ---- report
    ap.add_argument("--report", nargs="+", default=None, help="result files (globs ok): print Table 1 and stop")
    ap.add_argument("--report-png", default="results/table1.png", help="where --report saves the bar chart")
    ap.add_argument("--held-out", default=None, help="--report: comma-separated envs to show as held-out (default: "
                    "the paper's academia, sheet, jericho, pddl); every other env is held-in")
    args = ap.parse_args(argv)
    if args.report is None and (args.env is None or args.output is None):
        ap.error("--env and --output are required (or use --report FILES)")
    return args


# ----------------------------------------------------------------------------- tasks and policy

def task_list(args, env):
    if args.tasks and args.task_file:
        raise SystemExit("give --tasks or --task-file, not both")
    path = args.task_file
    if args.tasks is None and path is None:
        if args.env_server is not None:
            raise SystemExit(f"--tasks A:B is required with --env-server (the {args.env} server knows its tasks)")
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", f"{args.env}_test_ids.txt")
    if path is not None:
        if not os.path.exists(path):
            raise SystemExit(f"{path}: no such task id file")
        ids = []
        for n, line in enumerate(open(path), 1):
            if line.strip():
                try:
                    ids.append(int(line))
                except ValueError:
                    raise SystemExit(f"{path}:{n}: not a task id: {line.strip()!r}") from None
    else:
        try:
            a, b = (int(x) for x in args.tasks.split(":"))
        except ValueError:
            raise SystemExit(f"--tasks must be A:B (half-open range of ints), got {args.tasks!r}") from None
        ids = list(range(a, b))
    valid = env.task_ids()
    if valid is not None:
        bad = [i for i in ids if i not in valid]
        if bad:
            raise SystemExit(f"{args.env}: task ids out of range: {bad[:5]}{'...' if len(bad) > 5 else ''} "
                             f"(valid: {valid.start}..{valid.stop - 1})" if isinstance(valid, range) else
                             f"{args.env}: unknown task ids {bad[:5]}")
    return ids


def make_policy(args):
    if args.policy == "expert":
        if args.env_server:
            raise SystemExit("--policy expert needs a built-in environment (no expert over HTTP)")
        return agent.ExpertPolicy()
    if args.model is None:
        raise SystemExit(f"--policy {args.policy} needs --model")
    if args.policy == "openai":
        return agent.OpenAIPolicy(args.model, args.base_url, args.api_key, max_tokens=args.max_new_tokens,
                                  temperature=args.temperature, timeout=args.request_timeout)
    return agent.HFPolicy(args.model, max_new_tokens=args.max_new_tokens, max_context=args.max_context,
                          temperature=args.temperature)


def instruction_from(path, env_name):
    for _, rec in iter_records(path):
        if str(rec["item_id"]).lower().startswith(env_name):
            return rec["conversations"][0]["value"]
    raise SystemExit(f"{path}: no record whose item_id starts with {env_name!r}")


# ----------------------------------------------------------------------------- evaluation

def evaluate(args):
    env_kwargs = {}
    if args.instruction_from:
        if not args.env_server:
            raise SystemExit("--instruction-from is for --env-server environments")
        env_kwargs["instruction"] = instruction_from(args.instruction_from, args.env)
    try:
        probe = make_env(args.env, args.env_server, **env_kwargs)
    except (ValueError, ConnectionError) as e:
        raise SystemExit(str(e)) from None
    ids = task_list(args, probe)
    probe.close()
    label = args.label or (os.path.basename(args.model.rstrip("/")) if args.model else args.policy)
    done, out = open_resumable(args.output)
    traj_done, traj = open_resumable(args.save_trajectories) if args.save_trajectories else (set(), None)
    todo = [i for i in ids if f"{args.env}_{i}" not in done]
    with open(args.output + ".config.json", "w") as f:
        json.dump({**vars(args), "n_tasks": len(ids), "label": label}, f, indent=2)
    print(f"{args.env}: {len(ids)} tasks, {len(ids) - len(todo)} already in {args.output}, running {len(todo)} "
          f"with --policy {args.policy} at concurrency {args.concurrency}")
    policy = make_policy(args)
    stats, skipped_invalid, t0 = Counter(), 0, time.time()
    bar = tqdm(total=len(todo), desc=f"{args.env}", unit="ep")
    try:
        for res in agent.run_episodes(lambda: make_env(args.env, args.env_server, **env_kwargs), policy,
                                      [{"task_id": i} for i in todo], concurrency=args.concurrency,
                                      temperature=None, max_rounds=args.max_rounds, progress=bar):
            conv = res.pop("conversations")
            if traj is not None and res["item_id"] not in traj_done and (res["success"] or not args.success_only):
                rec = {"item_id": res["item_id"], "conversations": conv, "reward": res["reward"],
                       "success": res["success"]}
                try:
                    append_record(traj, validate_record(rec, args.save_trajectories))
                except RecordError as e:  # e.g. an empty model turn: counted and reported, never written
                    skipped_invalid += 1
                    tqdm.write(f"not saved: {e}")
            res["label"] = label
            append_record(out, res)
            stats["episodes"] += 1
            stats["success"] += res["success"]
            stats["reward"] += res["reward"]
            stats[f"end_{res['end']}"] += 1
            stats["format_errors"] += res["format_errors"]
            bar.update(1)
            bar.set_postfix(success=f"{stats['success'] / stats['episodes']:.3f}", refresh=False)
    except (agent.PolicyError, ConnectionError) as e:
        raise SystemExit(f"stopped: {e}") from None
    finally:
        bar.close()
        out.close()
        if traj is not None:
            traj.close()
    rows = [json.loads(line) for line in open(args.output) if line.strip()]
    rows = [r for r in rows if r["env"] == args.env and r["task_id"] in set(ids)]
    n = len(rows)
    secs = time.time() - t0
    print(f"{args.env}: {n} episodes, success {sum(r['success'] for r in rows) / max(n, 1):.4f}, mean reward "
          f"{sum(r['reward'] for r in rows) / max(n, 1):.4f}; this run: {stats['episodes']} episodes in {secs:.1f}s "
          f"({stats['episodes'] / max(secs, 1e-9):.2f} ep/s), ends "
          f"{ {k[4:]: v for k, v in stats.items() if k.startswith('end_')} }, malformed turns (no 'Action:') "
          f"{stats['format_errors']}" + (f", trajectories not saved (invalid) {skipped_invalid}"
                                          if skipped_invalid else ""))
    return rows


# ----------------------------------------------------------------------------- Table 1

def load_results(patterns):
    by = defaultdict(lambda: defaultdict(list))  # label -> env -> rows
    files = sorted({p for pat in patterns for p in (glob.glob(pat) or [pat])})
    for path in files:
        if not os.path.exists(path):
            raise SystemExit(f"{path}: no such file")
        for n, line in enumerate(open(path), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                label = r.get("label") or os.path.splitext(os.path.basename(path))[0]
                by[label][r["env"]].append(r)
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise SystemExit(f"{path}: line {n}: not a result line ({e})") from None
    return by


def score(env, rows):
    """The Table-1 number for one env: mean reward (dense-reward envs) or success rate, on a 0..100 scale."""
    if env in DENSE:
        return DENSE[env] * sum(r["reward"] for r in rows) / len(rows)
    return 100.0 * sum(r["success"] for r in rows) / len(rows)


def report(args):
    by = load_results(args.report)
    if not by:
        raise SystemExit("no results in " + " ".join(args.report))
    table = {}
    for label, envs in by.items():
        table[label] = {env: score(env, rows) for env, rows in envs.items()}
    held_out = args.held_out.split(",") if args.held_out else HELD_OUT
    held_in = [e for e in HELD_IN + HELD_OUT if e not in held_out]
    cols = held_in + ["avg_in"] + held_out + ["avg_out"]
    head = ["AVG" if c.startswith("avg_") else COLUMN.get(c, c) for c in cols]
    width = max(12, max(len(label) for label in table) + 2)
    print(f"{'':{width}}" + f"{'held-in':^{10 * (len(held_in) + 1)}}" + f"{'held-out':^{10 * (len(held_out) + 1)}}")
    print(f"{'Model':{width}}" + "".join(f"{h:>10}" for h in head))
    for label, s in table.items():
        cells = []
        for group, avg in ((held_in, "avg_in"), (held_out, "avg_out")):
            vals = [s[e] for e in group if e in s]
            s[avg] = sum(vals) / len(vals) if vals else None
        for c in cols:
            cells.append(f"{s[c]:10.2f}" if s.get(c) is not None else f"{'-':>10}")
        print(f"{label:{width}}" + "".join(cells))
    counts = {label: {env: len(rows) for env, rows in envs.items()} for label, envs in by.items()}
    print("episodes per cell: " + "; ".join(f"{label}: " + ", ".join(f"{e} {n}" for e, n in sorted(c.items()))
                                          for label, c in counts.items()))
    print("AVG is over the columns present; Babyai, Sciworld and Sheet are mean rewards (x100 for 0..1 rewards), "
          "the others success rates, as in AgentGym and the paper.")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    envs = [e for e in held_in + held_out if any(e in s for s in table.values())]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(envs) + 2), 4))
    w = 0.8 / len(table)
    for k, (label, s) in enumerate(table.items()):
        ax.bar([i + k * w for i in range(len(envs))], [s.get(e) or 0 for e in envs], w, label=label)
    ax.set_xticks([i + w * (len(table) - 1) / 2 for i in range(len(envs))])
    ax.set_xticklabels([COLUMN.get(e, e) + ("*" if e in held_out else "") for e in envs], rotation=30)
    ax.set_ylabel("score (0-100)")
    ax.set_title("held-in and held-out (*) environments")
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.report_png)), exist_ok=True)
    fig.savefig(args.report_png, dpi=120)
    print(f"bar chart: {args.report_png}")
    return table


if __name__ == "__main__":
    args = get_args()
    if args.report is not None:
        report(args)
    else:
        evaluate(args)
