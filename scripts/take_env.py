"""
The first N records of one environment from a JSONL file: the trajectories scripts/paper.sh restarts after each of
their critical steps for Table 6 (the paper: 100 BabyAI and 100 Maze ones).

    python scripts/take_env.py --input out/paper/select/critical@0.3.jsonl --env maze -n 100 \
        --output out/paper/table6/maze_selection.jsonl

A record's env is its item_id's by the one rule (trajectory.split_item_id: maze_3 and lmrlgym_maze_3 are maze).
An --output that exists is kept as it is; none is written when the env has no record. Prints how many it took and
what it left out (records of other envs, per env; item ids the rule cannot read, counted).
"""
import argparse
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from runs import write_jsonl  # noqa: E402
from trajectory import read_records, split_item_id  # noqa: E402

p = argparse.ArgumentParser(description="the first N records of one environment")
p.add_argument("--input", required=True, help="records (JSONL or a JSON list), e.g. the oracle's selection")
p.add_argument("--output", required=True, help="JSONL of the records taken (kept if it exists)")
p.add_argument("--env", required=True, help="the environment, as item ids name it (maze_3, lmrlgym_maze_3: maze)")
p.add_argument("-n", type=int, required=True, help="how many records to take at most (0: all)")
args = p.parse_args()

recs, left = [], Counter()
for r in read_records(args.input):
    try:
        env = split_item_id(r["item_id"])[0]
    except ValueError:  # not [prefix]<env>_<task id>: of no env, counted below
        env = "unreadable item ids"
    if env == args.env:
        recs.append(r)
    else:
        left[env] += 1
taken = recs[:args.n] if args.n > 0 else recs
if taken and not os.path.exists(args.output):
    write_jsonl(args.output, taken)
if len(recs) > len(taken):
    left[f"{args.env} beyond -n {args.n}"] = len(recs) - len(taken)
print(f"{args.output}: {len(taken)} trajectories of {args.env}"
      + (f"; left out: {', '.join(f'{k} {n}' for k, n in left.most_common())}" if left else ""))
