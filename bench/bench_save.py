"""
train.py's final save, two ways, on 2 gloo ranks: rank 0's peak host memory while it writes the HF folder.

    python bench/bench_save.py                          # ~200M-parameter Qwen2 config, each way in its own torchrun
    python bench/bench_save.py --layers 4 --hidden 512  # a quick look

"gathered" is the full state dict gathered on rank 0 and written with save_pretrained (train.py
--save-gathered); "sharded" is checkpoint.save_hf's default: every rank writes its shards with the distributed
checkpoint and rank 0 joins them file by file. The model is built from a config (random weights, fp32, saved in
bf16 as an 8B checkpoint would be) and sharded with fully_shard as train.py shards it. Rank 0's resident memory is
sampled every 2 ms during each save; the peak above the resident memory just before it is what the save costs.
Each way runs in a torchrun of its own (memory freed by one would otherwise be reused by the other); the second
run also loads both folders back and compares their weights. Prints one line per way and their ratio.
"""
import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

p = argparse.ArgumentParser(description="rank 0's peak memory during the final save: gathered vs sharded")
p.add_argument("--layers", type=int, default=12)
p.add_argument("--hidden", type=int, default=1024)
p.add_argument("--vocab", type=int, default=32000)
p.add_argument("--out", default=None, help="folder for the two saves (default: a temporary one)")
p.add_argument("--way", choices=("gathered", "sharded"), default=None, help="(set by the launcher) one way only")
args = p.parse_args()

if "RANK" not in os.environ:  # the launcher: each way in its own 2-rank torchrun, then the ratio
    import json
    import subprocess
    out = args.out or tempfile.mkdtemp(prefix="bench_save_")
    peaks = {}
    for way in ("gathered", "sharded"):
        cmd = [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--standalone", "--nproc_per_node", "2",
               __file__, "--layers", str(args.layers), "--hidden", str(args.hidden), "--vocab", str(args.vocab),
               "--out", out, "--way", way]
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
        if r.returncode or not lines:
            sys.exit(f"{way}: torchrun failed\n{r.stderr[-3000:]}")
        peaks[way] = json.loads(lines[-1])
        print(peaks[way]["line"])
    print(f"sharded / gathered peak memory on rank 0: {peaks['sharded']['peak'] / peaks['gathered']['peak']:.2f}; "
          f"the two folders load with identical weights: {peaks['sharded']['same']}")
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    ratio = peaks["sharded"]["peak"] / peaks["gathered"]["peak"]  # for bench/run_all.py's table
    print(json.dumps({"ratios": {"final save: rank 0 peak memory sharded / gathered": round(ratio, 3)},
                      "goals": {"final save: rank 0 peak memory sharded / gathered": "<= 0.6"}}))
    sys.exit(0 if peaks["sharded"]["same"] else 1)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.distributed.fsdp import fully_shard  # noqa: E402
from transformers import AutoModelForCausalLM, Qwen2Config  # noqa: E402

import checkpoint  # noqa: E402
from tests.tiny import tiny_tokenizer  # noqa: E402

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
config = Qwen2Config(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 3,
                     num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64,
                     num_key_value_heads=max(1, args.hidden // 256), tie_word_embeddings=False)
model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
n_params = sum(p.numel() for p in model.parameters())
for block in model.model.layers:
    fully_shard(block)
fully_shard(model)
tokenizer = tiny_tokenizer("qwen")
out = args.out


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(gather):
    path = os.path.join(out, "gathered" if gather else "sharded")
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)
    dist.barrier()
    base = rss()
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.time()
    checkpoint.save_hf(model, tokenizer, path, torch.bfloat16, ROOT, None, rank == 0, gather=gather)
    secs = time.time() - t0
    stop.set()
    t.join()
    return path, max(peak[0], rss()) - base, secs


path, peak, secs = measure(args.way == "gathered")
if rank == 0:
    import json
    other = os.path.join(out, "gathered")
    same = None
    if args.way == "sharded" and os.path.isdir(other):
        a = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).state_dict()
        b = AutoModelForCausalLM.from_pretrained(other, dtype=torch.bfloat16).state_dict()
        same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "?")
    name = "gathered (--save-gathered)" if args.way == "gathered" else "sharded (default)"
    line = (f"{name:28s} rank 0 peak above baseline {peak / 2 ** 20:7.0f} MiB ({peak / n_params:.2f} bytes/param), "
            f"{secs:.1f}s | Qwen2 config {n_params / 1e6:.0f}M parameters, fp32 in memory, saved in bf16 "
            f"({n_params * 2 / 2 ** 20:.0f} MiB), 2 gloo ranks, {cpu}")
    print(json.dumps({"line": line, "peak": peak, "same": same}))
dist.barrier()
dist.destroy_process_group()
