"""
Fine-tune a causal LM on ATLaS records: loss only on the critical steps (ATLaS §3.3), hand-written FSDP2.

The records come from select.py / perplexity.py (or any AgentGym-format file): a gpt turn is trained on iff its
`loss` flag is true. Tokenisation and the loss mask live in trajectory.tokenize_record (shared with perplexity.py).

One process (CPU, or one GPU):
    python train.py --data out/atlas_30.jsonl --model /models/Llama-3.1-8B-Instruct --output out/train/llama-atlas
One node, 8 GPUs (the paper's setting: lr 2e-5, 3 epochs, global batch 128 trajectories, 8192 tokens):
    torchrun --nproc_per_node 8 train.py --data out/atlas_30.jsonl --model /models/Llama-3.1-8B-Instruct \
        --output out/train/llama-atlas --activation-checkpointing
Continue a killed run (same command plus --resume; other data, model or optimisation flags are refused):
    torchrun --nproc_per_node 8 train.py ... --resume
Tiny CPU demo (2 processes, gloo):
    torchrun --nproc_per_node 2 train.py --data out/atlas_30.jsonl --model models/SmolLM2-135M-Instruct \
        --output out/train/demo --batch-size 8 --max-steps 4 --max-length 1024

Writes under --output: config.json (resolved flags, data hash and derived numbers), metrics.jsonl (one line per
optimizer step: loss, lr, grad norm, tokens/s, model TFLOP/s, MFU), final/ (HF folder: model + tokenizer,
loadable by from_pretrained and vLLM, and selection.json: the records' selection method, ratio and selector model,
which evaluate.py names its results by), step_N/ (the same, every --save-every steps), state/ (the latest
resumable state: sharded model + optimizer via torch.distributed.checkpoint, saved every --save-minutes and at each
epoch's end). checkpoint.py holds the folder policy, the loading and the saving; flops.py the FLOP, MFU and memory
counts. A folder that holds a run is never overwritten silently: pass --resume to continue it or --overwrite to
start over. One run writes a folder at a time (a lock in --output/.lock). Stop a run by killing the whole process
tree (`kill -- -PGID` of torchrun's group, or Ctrl-C): workers also exit by themselves within a second of the
launcher's death.
"""
import argparse
import array
import atexit
import functools
import hashlib
import inspect
import json
import math
import os
import signal
import sys
import time

from tqdm import tqdm

import checkpoint
import flops
import tracking
from devices import in_own_thread, init_distributed, leave, print0, refuse, resolve_dtype, token_budget_batches
from trajectory import (IGNORE_INDEX, RecordError, read_records, template_kwargs, tokenize_record,
                        trim_after_last_loss, use_template_kwargs)

# ----------------------------------------------------------------------------- the method (ATLaS §3.3)
# The whole trajectory is the input; only the critical steps' tokens are targets (labels = IGNORE_INDEX elsewhere,
# built by trajectory.tokenize_record from the records' loss flags). Each optimizer step divides the summed
# cross-entropy by the number of loss tokens of the whole global batch (all micro-batches, all ranks), so the
# gradient is the mean over every critical-step token of the batch, whatever the lengths or their split.

def critical_step_loss(model, x, y):
    """Summed cross-entropy of the critical-step tokens of micro-batch (x, y); y is x shifted by one, with
    IGNORE_INDEX everywhere the loss never looks. Only the loss positions go through the LM head: with a 128k
    vocabulary the logits of all positions would cost more memory than the rest of the step (supports_keep: the
    model's forward takes logits_to_keep, found once the model is built)."""
    import torch.nn.functional as F
    keep = y != IGNORE_INDEX
    logits = model(input_ids=x, use_cache=False, logits_to_keep=keep).logits if supports_keep else \
        model(input_ids=x, use_cache=False).logits[keep]
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y[keep], reduction="sum")


# ----------------------------------------------------------------------------- config
parser = argparse.ArgumentParser(description="ATLaS fine-tuning with the critical-step loss mask (FSDP2)")
# ---- data
parser.add_argument("--data", required=True, help="records to train on (JSONL or JSON list, AgentGym format)")
parser.add_argument("--max-length", type=int, default=8192, help="tokens per trajectory; longer ones are cut "
                    "and the steps that no longer fit are dropped and counted (paper: 8192)")
# ---- model
parser.add_argument("--model", required=True, help="local HF folder of the model to fine-tune (with tokenizer "
                    "and chat template)")
parser.add_argument("--chat-template-kwargs", default=None,
                    help="template variables for every render of the chat template, as JSON (e.g. "
                    "'{\"enable_thinking\": false}' for Qwen3); give train.py, perplexity.py, evaluate.py and "
                    "value_estimate.py the same")
parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"],
                    help="compute dtype; master weights, optimizer state and gradient reduction stay fp32. "
                    "auto = bfloat16 on GPU and on a CPU with native bf16 matmul, float32 otherwise")
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
parser.add_argument("--resume", action="store_true", help="continue the run in --output from its last saved "
                    "state (refused if the data, model or optimisation flags differ)")
parser.add_argument("--overwrite", action="store_true", help="start over in an --output that holds a run "
                    "(its config, metrics, checkpoints and final model are deleted)")
parser.add_argument("--save-minutes", type=float, default=30.0, help="save the resumable state (state/) at the "
                    "first step end after this many minutes since the last save, and at each epoch's end (0: only "
                    "at epoch ends)")
parser.add_argument("--cpu-offload", action="store_true", help="keep the sharded fp32 parameters, gradients and "
                    "AdamW state in host memory (FSDP2's CPUOffloadPolicy; the optimizer steps on the CPU): full "
                    "fine-tuning of an 8B model on one 80 GB GPU, slowly (the memory estimate says when it is needed)")
parser.add_argument("--report-to", default="none", help="also show the metrics and the settings in trackers: none, "
                    "or a comma-separated list of tensorboard, wandb, trackio (extras: requirements-tracking.txt; "
                    "tracking.py)")
parser.add_argument("--save-gathered", action="store_true", help="write HF folders from the full state dict "
                    "gathered on rank 0 (~6 bytes per parameter of its host memory) instead of every rank's shards "
                    "joined by rank 0: for ranks that share no filesystem")
parser.add_argument("--save-every", type=int, default=0, help="also save an HF folder step_N/ and the "
                    "resumable state every N optimizer steps (0: off)")
parser.add_argument("--stop-after", type=int, default=-1, help="leave after this many optimizer steps without "
                    "the final save, as a time-limited job would (resume with --resume); -1: off")
parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak dense TFLOP/s in the "
                    "compute dtype, for MFU (default: known GPUs' bf16 peak; none on CPU)")
args = parser.parse_args()

rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
master = rank == 0
NOTHING_TO_TRAIN = 3  # the exit code when no record keeps a loss token: the driver skips that row, loudly
fail = functools.partial(refuse, "train.py")  # one line on stderr, every rank stops (devices.refuse)


# ----------------------------------------------------------------------------- options and inputs, before any model
# Everything a user can get wrong is checked here, in a second (torch is not even imported yet), before a GPU is
# touched or an output folder exists.
bad = [f"--{k.replace('_', '-')} {getattr(args, k)} must be positive" for k in
       ("batch_size", "micro_batch_size", "micro_batch_tokens", "epochs", "max_length", "lr")
       if not getattr(args, k) > 0]
if args.batch_size > 0 and args.batch_size % world_size:
    bad.append(f"--batch-size {args.batch_size} must divide by the world size {world_size}")
bad += [f"{flag} {v} is out of range ({rule})" for flag, v, ok, rule in [
    ("--lr", args.lr, math.isfinite(args.lr), "finite"),
    ("--warmup-ratio", args.warmup_ratio, 0 <= args.warmup_ratio < 1, "0 <= r < 1"),
    ("--weight-decay", args.weight_decay, args.weight_decay >= 0, ">= 0"),
    ("--grad-clip", args.grad_clip, args.grad_clip >= 0, ">= 0"),
    ("--max-steps", args.max_steps, args.max_steps == -1 or args.max_steps > 0, "-1 or > 0"),
    ("--save-minutes", args.save_minutes, args.save_minutes >= 0, ">= 0"),
    ("--save-every", args.save_every, args.save_every >= 0, ">= 0"),
    ("--peak-tflops", args.peak_tflops, args.peak_tflops is None or args.peak_tflops > 0, "> 0")] if not ok]
if args.resume and args.overwrite:
    bad.append("--resume and --overwrite exclude each other")
try:
    chat_kwargs = template_kwargs(args.chat_template_kwargs)
except ValueError as e:
    bad.append(str(e))
try:
    report_to = tracking.parse(args.report_to)
except ValueError as e:
    bad.append(str(e))
if bad:
    fail("; ".join(bad))
if not os.path.isdir(args.model):
    fail(f"--model {args.model}: no such folder (train.py loads local model folders)")
if not os.path.isfile(os.path.join(args.model, "config.json")):
    fail(f"--model {args.model}: not a model folder (no config.json)")
if not any(n.endswith((".safetensors", ".bin", ".safetensors.index.json", ".bin.index.json"))
           for n in os.listdir(args.model)):
    fail(f"--model {args.model}: no weights (*.safetensors or *.bin) in the folder")
# Every rank reads the data; with several ranks a refusal waits for the ranks to compare notes (below), so that it
# is printed once whichever rank saw it, and ranks that read different bytes (a file still being written) never
# train.
records, data_problem, data_sha256 = [], None, None
try:
    records = read_records(args.data)
except RecordError as e:
    data_problem = f"bad data: {e}"
except Exception as e:  # whatever else a broken file raises (undecodable bytes, absurd nesting): one line
    data_problem = f"bad data: {args.data}: cannot read it ({type(e).__name__}: {e})"
if data_problem and world_size == 1:
    fail(data_problem)
if not data_problem:
    with open(args.data, "rb") as f:
        data_sha256 = hashlib.file_digest(f, "sha256").hexdigest()  # --resume compares it: other data, refused

# ----------------------------------------------------------------------------- distributed setup
# torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; a plain `python train.py` is a world of one, same code path.
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard  # noqa: E402

rank, world_size, device = init_distributed("train.py", always=True)  # FSDP needs a process group, even alone


def interrupted(signum, frame):
    """Ctrl-C (SIGINT; torchrun passes it on to its workers as SIGTERM): one line instead of a traceback per rank.
    Saves are written beside their place and renamed when complete, so leaving at once loses only the steps since
    the last saved state."""
    if master:
        print(f"train.py: interrupted ({signal.Signals(signum).name}); the last saved state in {args.output}/state "
              f"is kept: rerun the same command with --resume to continue", file=sys.stderr, flush=True)
    os._exit(130)


signal.signal(signal.SIGINT, interrupted)
signal.signal(signal.SIGTERM, interrupted)
if world_size > 1:  # the ranks agree on their data before anything else: same bytes, same records
    seen = [None] * world_size
    dist.all_gather_object(seen, (data_problem, data_sha256, len(records)))
    refused = [(r, p) for r, (p, _, _) in enumerate(seen) if p]
    if refused:
        fail(refused[0][1] + ("" if len(refused) == world_size else f" (seen by rank {refused[0][0]})"))
    if len({(sha, n) for _, sha, n in seen}) > 1:
        fail(f"bad data: {args.data}: the ranks read different data ("
             + ", ".join(f"rank {r}: {n} records, sha256 {sha[:12]}" for r, (_, sha, n) in enumerate(seen))
             + "); the file changed while it was read: rerun once it is complete")
use_cuda = device.type == "cuda"
torch.manual_seed(args.seed)
dtype, dtype_reason = resolve_dtype(args.dtype, device.type)
print0(f"compute dtype {str(dtype).replace('torch.', '')} ({dtype_reason}); master weights, AdamW state and "
       f"gradient reduction in float32")

# ----------------------------------------------------------------------------- data
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: E402

try:
    tokenizer = AutoTokenizer.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
except Exception as e:  # a model folder whose tokenizer files are missing or broken: one line, not a traceback
    fail(f"--model {args.model}: cannot load its tokenizer ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
use_template_kwargs(tokenizer, chat_kwargs)  # the same rendering as perplexity.py, evaluate.py, value_estimate.py
if getattr(tokenizer, "chat_template", None) is None:
    fail(f"--model {args.model}: the tokenizer has no chat template; ATLaS renders trajectories with the model's own "
         f"template (use an instruct/chat model folder)")
def tokenize_all():
    """Every record tokenised with the model's chat template, trimmed after its last loss token and pre-shifted (the
    model sees ids[:-1] and predicts labels[1:]): (inputs, targets, examples, skipped ids, loss turns cut, records
    truncated, tokens before and after the trim). The inputs and targets of all examples go into two flat int32
    buffers, examples[j] = (start, length, loss tokens): 8 bytes a token (lists of Python ints: ~37)."""
    inputs, targets = array.array("i"), array.array("i")
    examples, skipped, n_cut_turns, n_truncated, n_full, n_kept = [], [], 0, 0, 0, 0
    for rec in tqdm(records, desc="tokenize", disable=not master, delay=1):  # a bar for loops over 1 s
        try:
            t = tokenize_record(rec, tokenizer, args.max_length)
        except ValueError as e:  # RecordError too: a template that rewrites content, or no chat template at all
            raise RecordError(f"bad data: {args.data}: item_id {rec['item_id']!r}: {e}") from None
        ids, labels = trim_after_last_loss(t)
        n_cut_turns += t["n_cut_loss_turns"]
        n_truncated += t["n_tokens"] > len(t["input_ids"])
        x, y = ids[:-1], labels[1:]
        n_loss = sum(l != IGNORE_INDEX for l in y)
        if not n_loss:
            skipped.append(rec["item_id"])  # no loss token left (all loss turns cut, or a record without any)
            continue
        n_full += len(t["input_ids"])
        n_kept += len(ids)
        examples.append((len(inputs), len(x), n_loss))
        inputs.extend(x)
        targets.extend(y)
    return inputs, targets, examples, skipped, n_cut_turns, n_truncated, n_full, n_kept


try:  # in a thread of its own, so in a malloc arena of its own (devices.in_own_thread; bench/RESULTS.md)
    inputs, targets, examples, skipped, n_cut_turns, n_truncated, n_full, n_kept = in_own_thread(tokenize_all)
except RecordError as e:
    fail(str(e))
if not examples:
    fail(f"nothing to train: {args.data}: none of the {len(records)} records has a loss token within --max-length "
         f"{args.max_length} (first: {skipped[:3]})", NOTHING_TO_TRAIN)
inputs, targets = torch.frombuffer(inputs, dtype=torch.int32), torch.frombuffer(targets, dtype=torch.int32)
print0(f"{len(examples)} trajectories ({len(skipped)} skipped: no loss token after truncation), "
       f"{n_truncated} truncated to {args.max_length} tokens, {n_cut_turns} loss turns cut; "
       f"trimming after the last loss token saves {1 - n_kept / n_full:.1%} of the tokens")

# batch arithmetic: every optimizer step takes the next `batch_size` trajectories of the epoch's order,
# `batch_size / world_size` on each rank, cut into micro-batches; gradients accumulate over all of them.
per_rank = args.batch_size // world_size
steps_per_epoch = math.ceil(len(examples) / args.batch_size)
total_steps = args.epochs * steps_per_epoch if args.max_steps < 0 else \
    min(args.max_steps, args.epochs * steps_per_epoch)
warmup_steps = math.ceil(args.warmup_ratio * total_steps)
print0(f"global batch {args.batch_size} trajectories = {world_size} ranks x {per_rank} per rank, in micro-batches "
       f"of <= {args.micro_batch_size} trajectories and <= {args.micro_batch_tokens} tokens; "
       f"{steps_per_epoch} steps/epoch x {args.epochs} epochs -> {total_steps} steps ({warmup_steps} warmup)")
_orders = {}


def epoch_order(epoch):
    """The epoch's shuffle, identical on every rank (the role of DistributedSampler.set_epoch)."""
    if epoch not in _orders:
        g = torch.Generator().manual_seed(args.seed + epoch)
        _orders[epoch] = torch.randperm(len(examples), generator=g).tolist()
    return _orders[epoch]


def step_micro_batches(step, r=rank):
    """Rank r's micro-batches of optimizer step `step` (0-based): the global batch is sorted by length and
    dealt round-robin to the ranks (balanced work), then cut greedily by the row and token budgets, so rows of
    one micro-batch have similar lengths and padding stays small."""
    epoch, i = divmod(step, steps_per_epoch)
    batch = epoch_order(epoch)[i * args.batch_size:(i + 1) * args.batch_size]
    mine = sorted(batch, key=lambda j: -examples[j][1])[r::world_size]
    cuts = token_budget_batches([examples[j][1] for j in mine], args.micro_batch_tokens, args.micro_batch_size)
    return [[mine[k] for k in cut] for cut in cuts]


def collate(idx):
    """Right-padded (inputs, targets, number of real tokens, model FLOPs). No attention mask is needed: with right
    padding and causal attention no real token ever attends to a pad, and pads carry IGNORE_INDEX targets."""
    L = max(examples[j][1] for j in idx)
    x = torch.full((len(idx), L), pad_id, dtype=torch.long)
    y = torch.full((len(idx), L), IGNORE_INDEX, dtype=torch.long)
    for r, j in enumerate(idx):
        s, n, _ = examples[j]
        x[r, :n], y[r, :n] = inputs[s:s + n], targets[s:s + n]
    n_flops = sum(flops.train_flops(examples[j][1], examples[j][2], **shape) for j in idx)
    return x.to(device), y.to(device), sum(examples[j][1] for j in idx), n_flops


pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)


# ----------------------------------------------------------------------------- model
config = AutoConfig.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
save_dtype = getattr(config, "dtype", None) or torch.float32  # the dtype the checkpoint came in, to save back in
save_dtype = getattr(torch, save_dtype) if isinstance(save_dtype, str) else save_dtype
# Every rank builds the model on the meta device (no memory); rank 0 alone reads the weights, which are
# broadcast shard by shard after fully_shard (the pytorch/examples FSDP2 recipe).
with torch.device("meta"):
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, trust_remote_code=args.trust_remote_code)
n_params = sum(p.numel() for p in model.parameters())
shape = flops.model_shape(model, config)  # what collate's FLOP count needs
# memory per rank, sized on the largest micro-batch any rank will see (rows x padded length), printed before the
# weights are read so that a user can size the GPUs from the first lines of the log
largest = max((mb for s in range(total_steps) for r in range(world_size) for mb in step_micro_batches(s, r)),
              key=lambda mb: len(mb) * examples[mb[0]][1])
rows, length = len(largest), examples[largest[0]][1]
mem = flops.memory_per_rank(model, config, world_size, dtype, rows * length, sum(examples[j][2] for j in largest),
                            args.activation_checkpointing)
gib = {k: v / 2**30 for k, v in mem.items()}
print0(f"memory per rank (estimate): parameters {gib['params']:.2f} GiB + gradients {gib['grads']:.2f} + AdamW "
       f"{gib['adamw']:.2f} + activations {gib['activations']:.2f} (largest micro-batch {rows} x {length} tokens, "
       f"activation checkpointing {'on' if args.activation_checkpointing else 'off'}) = {sum(gib.values()):.2f} GiB"
       + ("; with --cpu-offload all but the activations in host memory" if args.cpu_offload else ""))
if device.type == "cuda" and not args.cpu_offload:  # say before loading the weights when a run cannot fit
    total = torch.cuda.get_device_properties(device).total_memory / 2**30
    if sum(gib.values()) > 0.9 * total:
        print0(f"the estimate exceeds 90 % of this GPU's {total:.0f} GiB: add ranks, --activation-checkpointing, "
               f"a smaller --micro-batch-tokens, or --cpu-offload (host memory per rank "
               f"{gib['params'] + gib['grads'] + gib['adamw']:.1f} GiB)")

# ----------------------------------------------------------------------------- output folder: one writer, nothing lost
# Rank 0 claims the folder (checkpoint.open_folder: its lock until the process ends, the settings kept, a folder
# holding a run refused unless --resume with the same data, model and optimisation flags, or --overwrite); the
# others follow its verdict. A refused run leaves no folder behind.
COMPARE = ["data_sha256", "model_id", "chat_template_kwargs", "max_length", "compute_dtype", "epochs", "max_steps",
           "lr", "weight_decay", "warmup_ratio", "grad_clip", "batch_size", "seed"]
selection = checkpoint.selection_of(records, args.model)  # named in every saved model folder, for the report's rows
if selection is None:
    print0(f"{args.data}: the records come from several selections; the model folders name none (no selection.json)")
run_config = {**vars(args), "model": os.path.abspath(args.model), "model_id": checkpoint.runs.identity(args.model),
              "data_sha256": data_sha256, "chat_template_kwargs": chat_kwargs,
              "compute_dtype": str(dtype), "world_size": world_size, "per_rank_batch": per_rank,
              "n_records": len(records), "n_examples": len(examples), "n_skipped": len(skipped),
              "steps_per_epoch": steps_per_epoch, "total_steps": total_steps, "warmup_steps": warmup_steps,
              "n_params": n_params, "selection": selection}
folder, refusal = checkpoint.open_folder(args, run_config, COMPARE, master)
if refusal:
    fail(refusal)

# ----------------------------------------------------------------------------- weights
if args.activation_checkpointing:
    model.activation_checkpointing_enable({"use_reentrant": False})  # non-reentrant: composes with FSDP hooks
mp = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
blocks = [m for m in model.modules() if type(m).__name__ in set(model._no_split_modules or [])]
if not blocks:  # what a base model must offer: docs/FORKING.md
    fail(f"--model {args.model}: {type(model).__name__} names no decoder blocks in _no_split_modules "
         f"({model._no_split_modules}); train.py shards each decoder block with fully_shard")
offload = {"offload_policy": CPUOffloadPolicy(pin_memory=use_cuda)} if args.cpu_offload else {}
for block in blocks:
    fully_shard(block, mp_policy=mp, **offload)
fully_shard(model, mp_policy=mp, **offload)
model.to_empty(device="cpu" if args.cpu_offload else device)  # offloaded shards live on the host
if args.cpu_offload and use_cuda:  # buffers (rotary inv_freq) are not offloaded: on the device, where FSDP
    for module in model.modules():  # brings the parameters for each forward
        for name, buf in module.named_buffers(recurse=False):
            module._buffers[name] = buf.to(device)
checkpoint.load_pretrained(model, args.model, config, master, args.trust_remote_code)  # rank 0 reads
model.train()
device_name = torch.cuda.get_device_name(device) if use_cuda else None
peak = flops.peak_tflops(device_name, dtype, args.peak_tflops)
placed = type(model._get_fsdp_state()._fsdp_param_group.offload_policy).__name__  # what FSDP was given
print0(f"{type(model).__name__}: {n_params / 1e6:.1f}M parameters, {len(blocks)} blocks sharded over "
       f"{world_size} rank(s) ({'held in host memory: ' if args.cpu_offload else 'offload: none, '}{placed}), "
       f"{'nccl on ' + device_name if use_cuda else 'gloo on CPU'}, MFU against "
       f"{f'{peak:g} TFLOP/s per device' if peak else 'nothing (give --peak-tflops)'}")

optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.999))


def get_lr(step):
    """Linear warmup over the first warmup_steps optimizer steps, then cosine decay to 0 (step is 0-based)."""
    if step < warmup_steps:
        return args.lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return args.lr * 0.5 * (1 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------- checkpoints (checkpoint.py)
def save_hf(path):
    try:
        checkpoint.save_hf(model, tokenizer, path, save_dtype, args.model, selection, master,
                           gather=args.save_gathered)
    except checkpoint.SaveError as e:  # a full disk: one line, every rank stops, the saved state is intact
        fail(f"{e}; nothing trained is lost: free space and rerun with --resume, which saves again")


def save_state(step):
    try:
        checkpoint.save_state(model, optimizer, args.output, step)
    except checkpoint.SaveError as e:
        fail(f"{e}; the last complete state is kept: free space and rerun with --resume")


start_step = 0
metrics_path = os.path.join(args.output, "metrics.jsonl")
if args.resume:
    start_step, path = checkpoint.load_state(model, optimizer, args.output, metrics_path)
    print0(f"resumed from {path} at step {start_step}")
    if start_step >= total_steps and os.path.isdir(os.path.join(args.output, "final")):
        print0(f"the run in {args.output} is complete ({total_steps} steps); nothing to do")
        leave(0)
if master:
    metrics = open(metrics_path, "a" if args.resume else "w")
    trackers = tracking.Trackers(report_to, args.output, os.path.basename(os.path.normpath(args.output)), run_config)
    atexit.register(trackers.close)  # leave() runs it: what was logged is flushed on every exit
supports_keep = "logits_to_keep" in inspect.signature(model.forward).parameters

# ----------------------------------------------------------------------------- training loop
t_start, tok_total, pad_total, last_save = time.time(), 0, 0, time.time()
for step in range(start_step, total_steps):
    t0 = time.time()
    micro = [collate(idx) for idx in step_micro_batches(step)]
    # Count before the first forward: the loss tokens of the whole global batch (all micro-batches, all
    # ranks), so every micro-batch contributes sum(CE) / global count and the step's gradient is the mean over
    # all loss tokens, whatever the lengths or their split over ranks. Also the micro-batch count: every rank
    # must run as many forward/backward passes as the busiest one (FSDP's collectives are matched calls), so a
    # rank with fewer (the last, partial batch of an epoch) runs empty ones and can never hang the others.
    counts = torch.tensor([sum(int((y != IGNORE_INDEX).sum()) for _, y, _, _ in micro),
                           sum(x.size(0) for x, _, _, _ in micro)], device=device)
    n_micro = torch.tensor(len(micro), device=device)
    dist.all_reduce(counts)
    dist.all_reduce(n_micro, op=dist.ReduceOp.MAX)
    n_loss, n_traj = int(counts[0]), int(counts[1])
    assert n_traj == min(args.batch_size, len(examples) - step % steps_per_epoch * args.batch_size), n_traj
    empty = (torch.full((1, 1), pad_id, device=device), torch.full((1, 1), IGNORE_INDEX, device=device), 0, 0)
    micro += [empty] * (int(n_micro) - len(micro))
    loss_sum = torch.zeros((), device=device)
    for x, y, _, _ in micro:
        ce = critical_step_loss(model, x, y)
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
    # one float64 all-reduce for the step's numbers (FLOP counts pass 2^24); rank 0's clock decides a timed save,
    # so that every rank saves at the same step
    save_due = master and args.save_minutes > 0 and time.time() - last_save >= 60 * args.save_minutes
    stats = torch.tensor([loss_sum.item(), sum(m[2] for m in micro), sum(m[0].numel() for m in micro),
                          sum(m[3] for m in micro), float(save_due)], dtype=torch.float64, device=device)
    dist.all_reduce(stats)
    loss = float(stats[0]) / n_loss  # the global token-weighted loss, not rank 0's
    dt = time.time() - t0
    tok_total += float(stats[1])
    pad_total += float(stats[2]) - float(stats[1])
    tflops, step_mfu = flops.mfu(float(stats[3]), dt, world_size, peak)
    row = {"step": step + 1, "epoch": step // steps_per_epoch + 1, "loss": loss, "lr": lr, "grad_norm": grad_norm,
           "tokens": int(stats[1]), "loss_tokens": n_loss, "tokens_per_s": float(stats[1]) / dt,
           "loss_tokens_per_s": n_loss / dt, "flops": float(stats[3]), "tflops_per_device": tflops, "mfu": step_mfu,
           "time": time.time() - t_start}
    print0(f"step {step + 1}/{total_steps} | loss {loss:.4f} | lr {lr:.2e} | gnorm {grad_norm:.3f} | "
           f"tok/s {row['tokens_per_s']:.0f} | loss tok/s {row['loss_tokens_per_s']:.0f} | "
           f"TFLOP/s/dev {tflops:.3g}" + (f" | MFU {step_mfu:.1%}" if step_mfu is not None else "") + f" | {dt:.2f}s")
    if master:
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()
        trackers.log(row, step + 1)
    if step + 1 < total_steps:
        if args.save_every and (step + 1) % args.save_every == 0:
            save_hf(os.path.join(args.output, f"step_{step + 1}"))
        if args.save_every and (step + 1) % args.save_every == 0 or (step + 1) % steps_per_epoch == 0 or stats[4] > 0:
            save_state(step + 1)
            last_save = time.time()
    if args.stop_after > 0 and step + 1 - start_step >= args.stop_after and step + 1 < total_steps:
        print0(f"--stop-after {args.stop_after}: leaving at step {step + 1} without the final save")
        if master:
            metrics.close()
        leave(0)

# ----------------------------------------------------------------------------- the end
if start_step < total_steps:  # first: a run stopped between the two saves resumes at the end, saves final/ only
    save_state(total_steps)
save_hf(os.path.join(args.output, "final"))
elapsed = time.time() - t_start
print0(f"done: {total_steps - start_step} steps in {elapsed:.0f}s, {tok_total / max(elapsed, 1e-9):.0f} tok/s | "
       f"records {len(records)}, trained {len(examples)}, skipped {len(skipped)} (no loss token after truncation), "
       f"truncated {n_truncated}, loss turns cut {n_cut_turns} | tokens saved by trimming {1 - n_kept / n_full:.1%}, "
       f"padding {pad_total / max(tok_total + pad_total, 1):.1%} | model: {os.path.join(args.output, 'final')}")
if master:
    metrics.close()
leave(0)
