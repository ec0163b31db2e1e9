"""
The data stage of scripts/paper.sh: the training set and the test tasks of every environment, written once.

    python scripts/paper_data.py --out out/paper/data --train-envs babyai maze sciworld wordle textcraft \
        --heldout-envs pddl                                   # the bundled expert data, every test id
    python scripts/paper_data.py --out out/demo/data --train-envs babyai --heldout-envs wordle --n-train 40 \
        --n-eval 6 --babyai-levels 0 1 2 3 4 8 9 10 18 19 --tasks wordle=0:2

Writes OUT/train.jsonl (the trajectories of --train-envs from --train-data, or from the bundled
data/<env>_train.jsonl) and OUT/<env>_tasks.txt for every env (one task id a line: the range of --tasks, or the
first --n-eval ids of data/<env>_test_ids.txt). A file that exists is kept as it is, so a rerun changes nothing.
Prints what it wrote, per env, and what it left out.
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from tasks import split_item_id  # noqa: E402  (the one item-id rule: "lmrlgym_maze_3" -> ("maze", 3))
from runs import write_jsonl  # noqa: E402
from trajectory import read_records, step_indices  # noqa: E402

BABYAI_LEVELS = 40  # AgentGym's BabyAI: task id i plays level i % 40

p = argparse.ArgumentParser(description="the training set and the test tasks of scripts/paper.sh")
# ---- what to write
p.add_argument("--out", required=True, help="folder of train.jsonl and <env>_tasks.txt (paper.sh: $OUT/data)")
p.add_argument("--train-envs", nargs="+", required=True, help="held-in envs: trained on and evaluated")
p.add_argument("--heldout-envs", nargs="*", default=[], help="held-out envs: evaluated only")
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
envs, levels = args.train_envs, set(args.babyai_levels)
os.makedirs(args.out, exist_ok=True)


def of_level(env, task):
    return env != "babyai" or not levels or task % BABYAI_LEVELS in levels


# ---- the training set: the trajectories of the held-in envs, grouped by env when cut to --n-train
out = os.path.join(args.out, "train.jsonl")
if os.path.exists(out):
    print(f"{out}: exists")
else:
    files = args.train_data or [os.path.join(ROOT, "data", f"{e}_train.jsonl") for e in envs]
    kept, left = [], {"of other envs": 0, "of other BabyAI levels": 0, f"beyond --n-train {args.n_train}": 0}
    for r in (r for f in files for r in read_records(f)):
        try:
            env, task = split_item_id(r["item_id"])
        except ValueError:  # not <env>_<task id>: of no env this run trains on
            env, task = None, None
        if env not in envs:
            left["of other envs"] += 1
        elif not of_level(env, task):
            left["of other BabyAI levels"] += 1
        else:
            kept.append((env, r))
    if args.n_train > 0:
        cut = [(e, r) for env in envs for e, r in [x for x in kept if x[0] == env][:args.n_train]]
        left[f"beyond --n-train {args.n_train}"] = len(kept) - len(cut)
        kept = cut
    if not kept:
        sys.exit(f"no training trajectory of {' '.join(envs)} in {' '.join(args.train_data) or 'data/'}")
    recs = [r for _, r in kept]
    write_jsonl(out, recs)
    per_env = ", ".join(f"{env} {sum(e == env for e, _ in kept)}" for env in envs)
    dropped = "; ".join(f"{n} {why}" for why, n in left.items() if n)
    print(f"{out}: {len(recs)} trajectories of {', '.join(envs)}, {sum(len(step_indices(r)) for r in recs)} steps "
          f"({per_env}){f'; left out: {dropped}' if dropped else ''}")

# ---- the test tasks of every env: a range, or the first --n-eval test ids (of --babyai-levels' levels)
ranges = {}
for spec in args.tasks:
    env, _, ab = spec.partition("=")
    a, _, b = ab.partition(":")
    if not (a.strip().isdigit() and b.strip().isdigit()):
        sys.exit(f"TASKS_{env}={ab}: not A:B (task ids A..B-1)")
    ranges[env] = range(int(a), int(b))
for env in envs + args.heldout_envs:
    path, ids_file = os.path.join(args.out, f"{env}_tasks.txt"), os.path.join(ROOT, "data", f"{env}_test_ids.txt")
    if os.path.exists(path):
        continue
    if env in ranges:
        ids = list(ranges[env])
    elif os.path.exists(ids_file):
        ids = [int(line) for line in open(ids_file) if line.strip()]
        ids = [t for t in ids if of_level(env, t)]
        ids = ids[:args.n_eval] if args.n_eval > 0 else ids
    else:
        sys.exit(f"no test tasks for {env}: set TASKS_{env}=A:B")
    with open(path + ".tmp", "w") as f:  # then renamed: a cut write is never taken for a finished one
        f.writelines(f"{t}\n" for t in ids)
    os.replace(path + ".tmp", path)
    print(f"{path}: {len(ids)} test tasks of {env}")
