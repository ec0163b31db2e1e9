"""
Trimming savings on the bundled data: the share of training tokens train.py never computes because it drops every
token after the last loss token of a trajectory (trajectory.trim_after_last_loss; in a causal model they cannot
change the loss or the gradients, tests/test_train.py checks that).

    python bench/bench_trim.py                       # data/*_train.jsonl, SmolLM2 tokenizer (scripts/get_smollm2.py)
    python bench/bench_trim.py --data data/maze_train.jsonl --tokenizer path/to/model

For each bundled file it compares three selections of the same trajectories: all steps (the AgentGym baseline,
only the final observation is trimmed), a random 30 % (select.py --method random, the paper's budget function)
and, when the demo has made them, the oracle (out/demo/select/atlas.jsonl) and perplexity selections.
The last line of stdout is a JSON object with the numbers (bench/run_all.py reads it).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from trajectory import read_records, tokenize_record  # noqa: E402

p = argparse.ArgumentParser(description="share of training tokens saved by trimming after the last loss token")
p.add_argument("--data", nargs="+", default=sorted(glob.glob(os.path.join(ROOT, "data", "*_train.jsonl"))),
               help="expert trajectories (default: the bundled data/*_train.jsonl)")
p.add_argument("--tokenizer", default=os.path.join(ROOT, "cache", "smollm2", "hf"),
               help="model folder whose tokenizer and chat template render the records (default: SmolLM2)")
p.add_argument("--limit", type=int, default=100, help="records per file (tokenising is the whole cost)")
p.add_argument("--max-length", type=int, default=8192, help="as train.py --max-length")
p.add_argument("--demo-dir", default=os.path.join(ROOT, "out", "demo", "select"),
               help="also measure the selections the demo made here, when present")
args = p.parse_args()

if os.path.exists(os.path.join(args.tokenizer, "tokenizer.json")):
    from transformers import AutoTokenizer
    tok, tok_name = AutoTokenizer.from_pretrained(args.tokenizer), os.path.relpath(args.tokenizer, ROOT)
else:
    from tests.tiny import tiny_tokenizer
    tok, tok_name = tiny_tokenizer("llama3"), "tiny llama3 (no SmolLM2 cache: run scripts/get_smollm2.py)"


def saved(records):
    full = kept = 0
    for rec in records:
        t = tokenize_record(rec, tok, args.max_length)
        full += len(t["input_ids"])
        kept += t["n_keep"]
    return full, kept


results = {}
with tempfile.TemporaryDirectory() as tmp:
    for path in args.data:
        env = os.path.basename(path).split("_")[0]
        recs = read_records(path)[:args.limit]
        sub = os.path.join(tmp, f"{env}.jsonl")
        with open(sub, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in recs)
        rnd = os.path.join(tmp, f"{env}_random.jsonl")
        subprocess.run([sys.executable, os.path.join(ROOT, "select.py"), "--input", sub, "--output", rnd,
                        "--method", "random", "--ratio", "0.3"], check=True, capture_output=True, cwd=ROOT)
        sets = {"all steps": recs, "random 30%": read_records(rnd)}
        ids = {r["item_id"] for r in recs}
        for name in ("atlas", "perplexity"):
            demo = os.path.join(args.demo_dir, f"{name}.jsonl")
            if os.path.exists(demo):
                mine = [r for r in read_records(demo) if r["item_id"] in ids]
                if mine:
                    sets[f"{name} (demo, {len(mine)})"] = mine
        for name, rs in sets.items():
            full, kept = saved(rs)
            results[f"{env} / {name}"] = {"records": len(rs), "tokens": full, "computed": kept,
                                          "saved": 1 - kept / full}

print(f"tokenizer: {tok_name}; tokens after the last loss token are not computed by train.py")
print(f"{'data / selection':36} {'records':>7} {'tokens':>9} {'computed':>9} {'saved':>7}")
for k, v in results.items():
    print(f"{k:36} {v['records']:7d} {v['tokens']:9d} {v['computed']:9d} {v['saved']:7.1%}")
print(json.dumps({"bench": "trim", "ratios": {f"tokens saved by trimming: {k}": round(v["saved"], 4)
                                              for k, v in results.items()}}))
