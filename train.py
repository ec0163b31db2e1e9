"""
Fine-tune a causal LM on ATLaS records: loss only on the critical steps (ATLaS §3.3), hand-written FSDP2.

The records come from select.py / perplexity.py (or any AgentGym-format file): a gpt turn is trained on iff its
`loss` flag is true. Tokenisation and the loss mask live in trajectory.tokenize_record (shared with perplexity.py).

One process (CPU, or one GPU):
    python train.py --data out/atlas_30.jsonl --model /models/Llama-3.1-8B-Instruct --output out/train/llama-atlas
One node, 8 GPUs (the paper's setting: lr 2e-5, 3 epochs, global batch 128 trajectories, 8192 tokens):
    torchrun --nproc_per_node 8 train.py --data out/atlas_30.jsonl --model /models/Llama-3.1-8B-Instruct \
        --output out/train/llama-atlas --activation-checkpointing
Continue a killed run (same command plus --resume):
    torchrun --nproc_per_node 8 train.py ... --resume
Tiny CPU demo (2 processes, gloo):
    torchrun --nproc_per_node 2 train.py --data out/atlas_30.jsonl --model models/SmolLM2-135M-Instruct \
        --output out/train/demo --batch-size 8 --max-steps 4 --max-length 1024

Writes under --output: config.json (resolved flags and derived numbers), metrics.jsonl (one line per optimizer
step), final/ (HF folder: model + tokenizer, loadable by from_pretrained and vLLM), step_N/ (every --save-every
steps), state/ (the latest resumable state: sharded model + optimizer via torch.distributed.checkpoint).
"""
import argparse
import inspect
import json
import math
import os
import shutil
import time

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn.functional as F
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_state_dict,
                                                     set_model_state_dict, set_state_dict)
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from tqdm import tqdm

from trajectory import IGNORE_INDEX, RecordError, read_records, tokenize_record, trim_after_last_loss

# ----------------------------------------------------------------------------- config
parser = argparse.ArgumentParser(description="ATLaS fine-tuning with the critical-step loss mask (FSDP2)")
# ---- data
parser.add_argument("--data", required=True, help="records to train on (JSONL or JSON list, AgentGym format)")
parser.add_argument("--max-length", type=int, default=8192, help="tokens per trajectory; longer ones are cut "
                    "and the steps that no longer fit are dropped and counted (paper: 8192)")
# ---- model
parser.add_argument("--model", required=True, help="local HF folder of the model to fine-tune (with tokenizer "
                    "and chat template)")
parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"],
                    help="compute dtype; master weights, optimizer state and gradient reduction stay fp32. "
                    "auto = bfloat16 on GPU, float32 on CPU")
parser.add_argument("--trust-remote-code", action="store_true", help="allow model code from the model folder")
parser.add_argument("--activation-checkpointing", action="store_true", help="recompute each decoder block in "
                    "the backward pass (less memory, ~30%% more compute)")
# ---- optimization
parser.add_argument("--epochs", type=int, default=3, help="passes over the data (paper: 3)")
parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimizer steps; the lr "
                    "schedule spans min(epochs, max-steps) (-1: all epochs)")
parser.add_argument("--lr", type=float, default=2e-5, help="peak AdamW learning rate (paper: 2e-5)")
parser.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (paper: 0)")
parser.add_argument("--warmup-ratio", type=float, default=0.03, help="linear warmup over this share of the "
                    "optimizer steps, then cosine decay to 0 (paper: 0.03)")
parser.add_argument("--grad-clip", type=float, default=1.0, help="clip the global gradient norm (0: off)")
parser.add_argument("--batch-size", type=int, default=128, help="global batch in trajectories per optimizer "
                    "step, over all ranks, reached by gradient accumulation (paper: 128)")
parser.add_argument("--micro-batch-size", type=int, default=4, help="at most this many trajectories per "
                    "micro-batch (forward/backward) on one rank")
parser.add_argument("--micro-batch-tokens", type=int, default=16384, help="token budget of one micro-batch: "
                    "rows x padded length (the longest trajectory always gets a micro-batch of its own)")
parser.add_argument("--seed", type=int, default=0, help="seed of the data order and of torch")
# ---- checkpoints and logging
parser.add_argument("--output", required=True, help="output folder (config, metrics, checkpoints)")
parser.add_argument("--save-every", type=int, default=0, help="also save an HF folder step_N/ and the "
                    "resumable state every N optimizer steps (0: only at the end)")
parser.add_argument("--resume", action="store_true", help="continue from --output/state (same flags)")
parser.add_argument("--stop-after", type=int, default=-1, help="leave after this many optimizer steps without "
                    "the final save, as a time-limited job would (resume with --resume); -1: off")
args = parser.parse_args()

# ----------------------------------------------------------------------------- distributed setup
# torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; a plain `python train.py` is a world of one, same code path.
use_cuda = torch.cuda.is_available()
if "RANK" in os.environ:
    dist.init_process_group("nccl" if use_cuda else "gloo")
else:
    dist.init_process_group("nccl" if use_cuda else "gloo", store=dist.HashStore(), rank=0, world_size=1)
rank, world_size = dist.get_rank(), dist.get_world_size()
local_rank = int(os.environ.get("LOCAL_RANK", 0))
device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
if use_cuda:
    torch.cuda.set_device(device)
master = rank == 0
print0 = lambda *a, **k: print(*a, **k, flush=True) if master else None
torch.manual_seed(args.seed)
dtype = {"auto": torch.bfloat16 if use_cuda else torch.float32, "bfloat16": torch.bfloat16,
         "float32": torch.float32}[args.dtype]
if not os.path.isfile(os.path.join(args.model, "config.json")):
    raise SystemExit(f"--model {args.model}: not a model folder (no config.json); train.py loads local folders")

# ----------------------------------------------------------------------------- data
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: E402

tokenizer = AutoTokenizer.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
try:
    records = read_records(args.data)
except RecordError as e:
    raise SystemExit(f"bad data: {e}")
examples, skipped, n_cut_turns, n_truncated, n_full, n_kept = [], [], 0, 0, 0, 0
for rec in tqdm(records, desc="tokenize", disable=not master):
    try:
        t = tokenize_record(rec, tokenizer, args.max_length)
    except ValueError as e:  # RecordError too: a template that rewrites content, or no chat template at all
        raise SystemExit(f"bad data: {args.data}: item_id {rec['item_id']!r}: {e}")
    ids, labels = trim_after_last_loss(t)
    n_cut_turns += t["n_cut_loss_turns"]
    n_truncated += t["n_tokens"] > len(t["input_ids"])
    # pre-shift: the model sees ids[:-1] and predicts labels[1:]
    x, y = ids[:-1], labels[1:]
    if not any(l != IGNORE_INDEX for l in y):
        skipped.append(rec["item_id"])  # no loss token left (all loss turns cut, or a record without any)
        continue
    n_full += len(t["input_ids"])
    n_kept += len(ids)
    examples.append((x, y))
if not examples:
    raise SystemExit(f"bad data: {args.data}: none of the {len(records)} records has a loss token within "
                     f"--max-length {args.max_length} (first: {skipped[:3]})")
print0(f"{len(examples)} trajectories ({len(skipped)} skipped: no loss token after truncation), "
       f"{n_truncated} truncated to {args.max_length} tokens, {n_cut_turns} loss turns cut; "
       f"trimming after the last loss token saves {1 - n_kept / n_full:.1%} of the tokens")

# batch arithmetic: every optimizer step takes the next `batch_size` trajectories of the epoch's order,
# `batch_size / world_size` on each rank, cut into micro-batches; gradients accumulate over all of them.
assert args.batch_size % world_size == 0, f"--batch-size {args.batch_size} must divide by world size {world_size}"
per_rank = args.batch_size // world_size
steps_per_epoch = math.ceil(len(examples) / args.batch_size)
total_steps = args.epochs * steps_per_epoch if args.max_steps < 0 else min(args.max_steps, args.epochs * steps_per_epoch)
warmup_steps = math.ceil(args.warmup_ratio * total_steps)
print0(f"global batch {args.batch_size} trajectories = {world_size} ranks x {per_rank} per rank, in micro-batches "
       f"of <= {args.micro_batch_size} trajectories and <= {args.micro_batch_tokens} tokens; "
       f"{steps_per_epoch} steps/epoch x {args.epochs} epochs -> {total_steps} steps ({warmup_steps} warmup)")


def epoch_order(epoch):
    """The epoch's shuffle, identical on every rank (the role of DistributedSampler.set_epoch)."""
    return torch.randperm(len(examples), generator=torch.Generator().manual_seed(args.seed + epoch)).tolist()


def step_micro_batches(step):
    """This rank's micro-batches of optimizer step `step` (0-based): the global batch is sorted by length and
    dealt round-robin to the ranks (balanced work), then cut greedily by the row and token budgets, so rows of
    one micro-batch have similar lengths and padding stays small."""
    epoch, i = divmod(step, steps_per_epoch)
    batch = epoch_order(epoch)[i * args.batch_size:(i + 1) * args.batch_size]
    mine = sorted(batch, key=lambda j: -len(examples[j][0]))[rank::world_size]
    micro, cur = [], []
    for j in mine:  # longest first, so a micro-batch's padded length is that of its first row
        if cur and (len(cur) == args.micro_batch_size or
                    (len(cur) + 1) * len(examples[cur[0]][0]) > args.micro_batch_tokens):
            micro.append(cur)
            cur = []
        cur.append(j)
    return micro + [cur] if cur else micro


def collate(idx):
    """Right-padded (inputs, targets, number of real tokens). No attention mask is needed: with right padding and causal attention no
    real token ever attends to a pad, and pads carry IGNORE_INDEX targets."""
    L = max(len(examples[j][0]) for j in idx)
    x = torch.full((len(idx), L), pad_id, dtype=torch.long)
    y = torch.full((len(idx), L), IGNORE_INDEX, dtype=torch.long)
    for r, j in enumerate(idx):
        xs, ys = examples[j]
        x[r, :len(xs)], y[r, :len(ys)] = torch.tensor(xs), torch.tensor(ys)
    return x.to(device), y.to(device), sum(len(examples[j][0]) for j in idx)


pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

# ----------------------------------------------------------------------------- model
config = AutoConfig.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
save_dtype = getattr(config, "dtype", None) or torch.float32  # the dtype the checkpoint came in, to save back in
save_dtype = getattr(torch, save_dtype) if isinstance(save_dtype, str) else save_dtype
# Every rank builds the model on the meta device (no memory); rank 0 alone reads the weights, which are
# broadcast shard by shard after fully_shard (the pytorch/examples FSDP2 recipe).
with torch.device("meta"):
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, trust_remote_code=args.trust_remote_code)
full_sd, buffers = {}, {}
if master:
    ref = AutoModelForCausalLM.from_pretrained(args.model, config=config, dtype=torch.float32,
                                               trust_remote_code=args.trust_remote_code)
    full_sd, buffers = ref.state_dict(), {k: v.clone() for k, v in ref.named_buffers()}
    del ref
if args.activation_checkpointing:
    model.activation_checkpointing_enable({"use_reentrant": False})  # non-reentrant: composes with FSDP hooks
mp = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
blocks = [m for m in model.modules() if type(m).__name__ in set(model._no_split_modules or [])]
assert blocks, f"found no decoder blocks ({model._no_split_modules}) to shard in {type(model).__name__}"
for block in blocks:
    fully_shard(block, mp_policy=mp)
fully_shard(model, mp_policy=mp)
model.to_empty(device=device)
set_model_state_dict(model, full_sd, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
for name, buf in model.named_buffers():  # non-persistent buffers (rotary inv_freq) are not in the state dict
    if master:
        buf.copy_(buffers[name])
    dist.broadcast(buf, src=0)
if getattr(config, "tie_word_embeddings", False):
    model.tie_weights()
del full_sd, buffers
model.train()
n_params = sum(p.numel() for p in model.parameters())
print0(f"{type(model).__name__}: {n_params / 1e6:.1f}M parameters, {len(blocks)} blocks sharded over "
       f"{world_size} rank(s), compute {dtype}, {'nccl' if use_cuda else 'gloo'}")

optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.999))


def get_lr(step):
    """Linear warmup over the first warmup_steps optimizer steps, then cosine decay to 0 (step is 0-based)."""
    if step < warmup_steps:
        return args.lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return args.lr * 0.5 * (1 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------- checkpoints
def save_hf(path):
    """Full HF folder: every rank gathers the full state dict (a collective), rank 0 writes it."""
    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if master:
        sd = {k: v.to(save_dtype) for k, v in sd.items()}
        model.config.dtype = save_dtype  # the dtype of the saved weights, not of our fp32 master copy
        model.save_pretrained(path, state_dict=sd)
        tokenizer.save_pretrained(path)
        for name in ("generation_config.json",):
            if os.path.exists(os.path.join(args.model, name)):
                shutil.copy(os.path.join(args.model, name), path)
    dist.barrier()


def save_state(step):
    """Resumable state: sharded model + optimizer (each rank writes its shards), this rank's RNG; the data
    position is `step` itself, since the order of every epoch is a function of (seed, epoch)."""
    path = os.path.join(args.output, "state", f"step_{step}")
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=path)
    torch.save(torch.get_rng_state(), os.path.join(path, f"rng_{rank}.pt"))
    dist.barrier()
    if master:  # point "latest" at it only once complete, then drop the older states
        with open(os.path.join(args.output, "state", "latest.tmp"), "w") as f:
            json.dump({"step": step, "world_size": world_size}, f)
        os.replace(os.path.join(args.output, "state", "latest.tmp"), os.path.join(args.output, "state", "latest"))
        for old in os.listdir(os.path.join(args.output, "state")):
            if old.startswith("step_") and old != f"step_{step}":
                shutil.rmtree(os.path.join(args.output, "state", old))
    dist.barrier()


start_step = 0
metrics_path = os.path.join(args.output, "metrics.jsonl")
if args.resume:
    latest = os.path.join(args.output, "state", "latest")
    if not os.path.exists(latest):
        raise SystemExit(f"--resume: no {latest}; nothing to resume in {args.output}")
    with open(latest) as f:
        start_step = json.load(f)["step"]
    path = os.path.join(args.output, "state", f"step_{start_step}")
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=path)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    rng = os.path.join(path, f"rng_{rank}.pt")
    if os.path.exists(rng):  # absent if the world size changed
        torch.set_rng_state(torch.load(rng))
    if master and os.path.exists(metrics_path):  # forget the steps the killed run did after this state
        with open(metrics_path) as f:
            kept = [l for l in f if l.strip() and json.loads(l)["step"] <= start_step]
        with open(metrics_path, "w") as f:
            f.writelines(kept)
    print0(f"resumed from {path} at step {start_step}")

if master:
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "config.json"), "w") as f:
        json.dump({**vars(args), "world_size": world_size, "per_rank_batch": per_rank, "compute_dtype": str(dtype),
                   "n_records": len(records), "n_examples": len(examples), "n_skipped": len(skipped),
                   "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "warmup_steps": warmup_steps,
                   "n_params": n_params}, f, indent=2)
    metrics = open(metrics_path, "a" if args.resume else "w")
supports_keep = "logits_to_keep" in inspect.signature(model.forward).parameters

# ----------------------------------------------------------------------------- training loop
t_start, tok_total, pad_total = time.time(), 0, 0
for step in range(start_step, total_steps):
    t0 = time.time()
    micro = [collate(idx) for idx in step_micro_batches(step)]
    # Count before the first forward: the loss tokens of the whole global batch (all micro-batches, all
    # ranks), so every micro-batch contributes sum(CE) / global count and the step's gradient is the mean over
    # all loss tokens, whatever the lengths or their split over ranks. Also the micro-batch count: every rank
    # must run as many forward/backward passes as the busiest one (FSDP's collectives are matched calls), so a
    # rank with fewer (the last, partial batch of an epoch) runs empty ones and can never hang the others.
    counts = torch.tensor([sum(int((y != IGNORE_INDEX).sum()) for _, y, _ in micro),
                           sum(x.size(0) for x, _, _ in micro)], device=device)
    n_micro = torch.tensor(len(micro), device=device)
    dist.all_reduce(counts)
    dist.all_reduce(n_micro, op=dist.ReduceOp.MAX)
    n_loss, n_traj = int(counts[0]), int(counts[1])
    assert n_traj == min(args.batch_size, len(examples) - step % steps_per_epoch * args.batch_size), n_traj
    empty = (torch.full((1, 1), pad_id, device=device), torch.full((1, 1), IGNORE_INDEX, device=device), 0)
    micro += [empty] * (int(n_micro) - len(micro))
    loss_sum = torch.zeros((), device=device)
    for x, y, _ in micro:
        keep = y != IGNORE_INDEX
        # only the loss positions go through the LM head: with a 128k vocabulary the logits of all positions
        # would cost more memory than the rest of the step
        logits = model(input_ids=x, use_cache=False, logits_to_keep=keep).logits if supports_keep else \
            model(input_ids=x, use_cache=False).logits[keep]
        ce = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y[keep], reduction="sum")
        # FSDP averages gradients over ranks; multiply by world_size so the reduced gradient is the plain sum
        (ce * world_size / n_loss).backward()
        loss_sum += ce.detach()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip if args.grad_clip > 0 else 1e30)
    grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
    lr = get_lr(step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    stats = torch.stack([loss_sum, torch.tensor(float(sum(n for _, _, n in micro)), device=device),
                         torch.tensor(float(sum(x.numel() for x, _, _ in micro)), device=device)])
    dist.all_reduce(stats)
    loss = float(stats[0]) / n_loss  # the global token-weighted loss, not rank 0's
    dt = time.time() - t0
    tok_total += float(stats[1])
    pad_total += float(stats[2]) - float(stats[1])
    row = {"step": step + 1, "epoch": step // steps_per_epoch + 1, "loss": loss, "lr": lr, "grad_norm": grad_norm,
           "tokens": int(stats[1]), "loss_tokens": n_loss, "tokens_per_s": stats[1].item() / dt,
           "loss_tokens_per_s": n_loss / dt, "time": time.time() - t_start}
    print0(f"step {step + 1}/{total_steps} | loss {loss:.4f} | lr {lr:.2e} | gnorm {grad_norm:.3f} | "
           f"tok/s {row['tokens_per_s']:.0f} | loss tok/s {row['loss_tokens_per_s']:.0f} | {dt:.2f}s")
    if master:
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()
    if args.save_every and (step + 1) % args.save_every == 0 and step + 1 < total_steps:
        save_hf(os.path.join(args.output, f"step_{step + 1}"))
        save_state(step + 1)
    if args.stop_after > 0 and step + 1 - start_step >= args.stop_after and step + 1 < total_steps:
        print0(f"--stop-after {args.stop_after}: leaving at step {step + 1} without the final save")
        dist.destroy_process_group()
        raise SystemExit(0)

# ----------------------------------------------------------------------------- the end
save_hf(os.path.join(args.output, "final"))
save_state(total_steps)
elapsed = time.time() - t_start
print0(f"done: {total_steps - start_step} steps in {elapsed:.0f}s, {tok_total / max(elapsed, 1e-9):.0f} tok/s | "
       f"records {len(records)}, trained {len(examples)}, skipped {len(skipped)} (no loss token after truncation), "
       f"truncated {n_truncated}, loss turns cut {n_cut_turns} | tokens saved by trimming {1 - n_kept / n_full:.1%}, "
       f"padding {pad_total / max(tok_total + pad_total, 1):.1%} | model: {os.path.join(args.output, 'final')}")
dist.destroy_process_group()
