"""
The first N records of one environment from a JSONL file: the trajectories scripts/paper.sh restarts after each of
their critical steps for Table 6 (the paper: 100 BabyAI and 100 Maze ones).

    python scripts/take_env.py --input out/paper/select/critical@0.3.jsonl --env maze -n 100 \
        --output out/paper/table6/maze_selection.jsonl

An --output that exists is kept as it is; none is written when the env has no record. Prints how many it took.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tasks import split_item_id  # noqa: E402
from runs import write_jsonl  # noqa: E402
from trajectory import read_records  # noqa: E402

p = argparse.ArgumentParser(description="the first N records of one environment")
p.add_argument("--input", required=True, help="records (JSONL or a JSON list), e.g. the oracle's selection")
p.add_argument("--output", required=True, help="JSONL of the records taken (kept if it exists)")
p.add_argument("--env", required=True, help="the environment, as item ids name it (maze_3, lmrlgym_maze_3: maze)")
p.add_argument("-n", type=int, required=True, help="how many records to take at most")
args = p.parse_args()


def env_of(rec):
    try:
        return split_item_id(rec["item_id"])[0]
    except ValueError:  # not <env>_<task id>: of no env
        return None


recs = [r for r in read_records(args.input) if env_of(r) == args.env][:args.n]
if recs and not os.path.exists(args.output):
    write_jsonl(args.output, recs)
print(f"{args.output}: {len(recs)} trajectories of {args.env}")
