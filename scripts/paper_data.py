"""
The data stage of scripts/paper.sh: the training set and the test tasks of every environment, written once.

    python scripts/paper_data.py --out out/paper/data --train-envs babyai maze sciworld wordle textcraft \
        --heldout-envs pddl                                   # the bundled expert data, every test id
    python scripts/paper_data.py --out out/paper/data --train-data AgentTraj-L/*.json --train-envs webshop babyai \
        --servers webshop --tasks webshop=0:200              # AgentTraj-L's files, an env served by AgentGym
    python scripts/paper_data.py --out out/demo/data --train-envs babyai --heldout-envs wordle --n-train 40 \
        --n-eval 6 --babyai-levels 0 1 2 3 4 8 9 10 18 19 --tasks wordle=0:2

Writes OUT/train.jsonl (the trajectories of --train-envs from --train-data, or from the bundled
data/<env>_train.jsonl) and OUT/<env>_tasks.txt for every env (one task id a line: the range of --tasks, or the
first --n-eval ids of data/<env>_test_ids.txt). A record's env and task are its item_id's by the one rule
(trajectory.env_task: lmrlgym_maze_3 is maze task 3, tool_weather_5 weather task 5). A file that exists is kept as it
is, so a rerun changes nothing. Prints per env what it kept and what it left out, and why: the records of the envs
not trained on (each env counted), other BabyAI levels, beyond --n-train, item ids the rule cannot read.
An env that cannot be evaluated here (not in envs.REGISTRY, e.g. AgentTraj-L's sqlgym; or neither built in nor
named in --servers) is refused with exit code 2 before anything is written.
"""
import argparse
import os
import sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import envs  # noqa: E402
from envs import agentboard  # noqa: E402
from runs import write_jsonl  # noqa: E402
from trajectory import RecordError, env_task, read_records, step_indices  # noqa: E402  (env_task: the item-id rule)

BABYAI_LEVELS = 40  # AgentGym's BabyAI: task id i plays level i % 40

p = argparse.ArgumentParser(description="the training set and the test tasks of scripts/paper.sh")
# ---- what to write
p.add_argument("--out", required=True, help="folder of train.jsonl and <env>_tasks.txt (paper.sh: $OUT/data)")
p.add_argument("--train-envs", nargs="+", required=True, help="held-in envs: trained on and evaluated")
p.add_argument("--heldout-envs", nargs="*", default=[], help="held-out envs: evaluated only")
p.add_argument("--servers", nargs="*", default=[], metavar="ENV",
               help="the envs with an AgentGym server (paper.sh: the names in ENV_SERVERS); every other env must be "
                    "built in")
# ---- the training set
p.add_argument("--train-data", nargs="*", default=[],
               help="AgentTraj-L file(s) (JSON list or JSONL); none: the bundled data/<env>_train.jsonl")
p.add_argument("--n-train", type=int, default=0, help="the first N trajectories of each env (0: all)")
p.add_argument("--babyai-levels", nargs="*", type=int, default=[],
               help="only these BabyAI levels (task id i plays level i %% 40), in training and test (none: all 40)")
# ---- the test tasks
p.add_argument("--n-eval", type=int, default=0, help="the first N test ids of each env (0: all)")
p.add_argument("--tasks", nargs="*", metavar="ENV=A:B",
               default=[f"{k[len('TASKS_'):]}={v}" for k, v in os.environ.items() if k.startswith("TASKS_") and v],
               help="test tasks A..B-1 of ENV instead of its test ids (default: every TASKS_<env>=A:B in the "
                    "environment, as scripts/paper.sh documents them)")
args = p.parse_args()
train_envs, levels = args.train_envs, set(args.babyai_levels)


def unevaluable(env):
    """Why `env` cannot be evaluated here, or None: evaluate.py plays a built-in env in-process and any other
    registered env over HTTP (an AgentGym server and a client in envs/protocol.py)."""
    if env not in envs.REGISTRY:
        what = " (AgentGym's SQL env: AgentTraj-L has its trajectories, but it has no environment here)" \
            if env == "sqlgym" else ""
        return f"not an environment of envs.REGISTRY{what}; known: {', '.join(envs.REGISTRY)}"
    if env in agentboard.ENVS:  # AgentBoard's jericho and pddl: its data folder must be named
        try:
            agentboard.folders(env)
        except ValueError as e:
            return str(e).split(": ", 1)[1]
    if env in envs.BUILTIN:
        return None
    if env not in envs.MAX_ROUNDS:
        return "has no HTTP client here (envs/protocol.py) and is not built in"
    if env not in args.servers:
        return (f"is not built in and has no server: name it in --servers (scripts/paper.sh: "
                f"ENV_SERVERS=\"{env}=http://HOST:PORT\")")
    return None


def of_level(env, task):
    return env != "babyai" or not levels or task % BABYAI_LEVELS in levels


def eval_tasks(env, ranges):
    """The test task ids of `env`: the range of --tasks, or the first --n-eval ids of data/<env>_test_ids.txt, or
    of the tasks AgentBoard's data folder holds (jericho, pddl: all of them are its test set)."""
    ids_file = os.path.join(ROOT, "data", f"{env}_test_ids.txt")
    if env in ranges:
        return list(ranges[env])
    if os.path.exists(ids_file):
        ids = [t for t in (int(line) for line in open(ids_file) if line.strip()) if of_level(env, t)]
    elif env in agentboard.ENVS:
        probe = envs.make_env(env)
        try:
            ids = list(probe.task_ids())
        finally:
            probe.close()
    else:
        sys.exit(f"scripts/paper_data.py: no test tasks for {env}: set TASKS_{env}=A:B")
    return ids[:args.n_eval] if args.n_eval > 0 else ids


# ---- refusals, before anything is written: an env that cannot be evaluated, test tasks that cannot be named
for flag, names in (("--train-envs", train_envs), ("--heldout-envs", args.heldout_envs)):
    for env in names:
        why = unevaluable(env)
        if why:
            print(f"scripts/paper_data.py: {flag} {env}: cannot be evaluated: {why}", file=sys.stderr)
            sys.exit(2)
ranges = {}
for spec in args.tasks:
    env, _, ab = spec.partition("=")
    a, _, b = ab.partition(":")
    if not (a.strip().isdigit() and b.strip().isdigit()):
        sys.exit(f"scripts/paper_data.py: TASKS_{env}={ab}: not A:B (task ids A..B-1)")
    ranges[env] = range(int(a), int(b))
tests = {env: eval_tasks(env, ranges) for env in train_envs + args.heldout_envs}


# ---- the training set: the trajectories of the held-in envs, grouped by env when cut to --n-train
out = os.path.join(args.out, "train.jsonl")
if os.path.exists(out):
    print(f"{out}: exists")
else:
    files = args.train_data or [os.path.join(ROOT, "data", f"{e}_train.jsonl") for e in train_envs]
    kept, seen = [], Counter()  # (env, record) in file order; records of each trained env read
    other, off_level, unreadable = Counter(), Counter(), []  # what is left out, and why
    for f in files:
        try:
            records = read_records(f)
        except RecordError as e:  # names the file and the record
            sys.exit(f"scripts/paper_data.py: {e}")
        for n, r in enumerate(records, 1):
            try:
                env, task = env_task(r)
            except ValueError as e:  # not [prefix]<env>_<task id>: of no env this run trains on
                unreadable.append(f"{f}: record {n}: {e}")
                continue
            if env not in train_envs:
                other[env] += 1
                continue
            seen[env] += 1
            if of_level(env, task):
                kept.append((env, r))
            else:
                off_level[env] += 1
    beyond = Counter()
    if args.n_train > 0:
        cut = [x for env in train_envs for x in [x for x in kept if x[0] == env][:args.n_train]]
        beyond = Counter(e for e, _ in kept) - Counter(e for e, _ in cut)
        kept = cut
    where = " ".join(args.train_data) or "data/"
    missing = [env for env in train_envs if not any(e == env for e, _ in kept)]
    if missing:  # a held-in env with no trajectory would be trained on nothing and still count as held-in
        sys.exit(f"scripts/paper_data.py: no training trajectory of {' '.join(missing)} in {where}"
                 + (f" ({unreadable[0]}; {len(unreadable)} unreadable in all)" if unreadable else ""))
    recs = [r for _, r in kept]
    os.makedirs(args.out, exist_ok=True)
    write_jsonl(out, recs)
    source = where if len(files) <= 2 else f"{len(files)} files ({files[0]}, ...)"
    print(f"{out}: {len(recs)} trajectories of {', '.join(train_envs)}, {sum(len(step_indices(r)) for r in recs)} "
          f"steps, from {source}")
    for env in train_envs:
        why = [f"{off_level[env]} of other BabyAI levels" if off_level[env] else "",
               f"{beyond[env]} beyond --n-train {args.n_train}" if beyond[env] else ""]
        why = "; ".join(w for w in why if w)
        print(f"  {env}: kept {sum(e == env for e, _ in kept)} of {seen[env]}" + (f" (left out: {why})" if why else ""))
    if other:
        print(f"  left out, not in --train-envs: {', '.join(f'{e} {k}' for e, k in sorted(other.items()))}")
    if unreadable:
        print(f"  left out {len(unreadable)} records whose item_id names no env (the first: {unreadable[0]})")

# ---- the test tasks of every env: a range, or the first --n-eval test ids (of --babyai-levels' levels)
os.makedirs(args.out, exist_ok=True)
for env, ids in tests.items():
    path = os.path.join(args.out, f"{env}_tasks.txt")
    if os.path.exists(path):
        continue
    with open(path + ".tmp", "w") as f:  # then renamed: a cut write is never taken for a finished one
        f.writelines(f"{t}\n" for t in ids)
    os.replace(path + ".tmp", path)
    print(f"{path}: {len(ids)} test tasks of {env}")
