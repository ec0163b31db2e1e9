"""Perplexity selection (paper Table 1 baseline, App. B.2): keep the top-m % steps of each trajectory by the base
model's perplexity on that step.

PPL of a step (eq. 5) = exp of the mean negative log-likelihood of the step's loss tokens given everything before
them, where "the step's loss tokens" are exactly the tokens train.py trains on for that step
(trajectory.tokenize_record). One forward pass per trajectory scores all of its steps: a causal LM's logits at
position p depend only on tokens <= p, so the full trajectory's forward pass gives every step the same
conditional probabilities as a separate pass on the prefix ending at that step (tests/test_perplexity.py checks
this to 1e-5; bench/bench_perplexity.py times it against the per-prefix way).

    # one device (GPU if there is one, else CPU)
    python perplexity.py --input data/agenttraj_l.json --output out/ppl.jsonl --model meta-llama/Llama-3.1-8B-Instruct
    # data parallel: each rank scores a slice into OUTPUT.partR, rank 0 merges them into OUTPUT at the end
    torchrun --nproc_per_node 8 perplexity.py --input data/agenttraj_l.json --output out/ppl.jsonl \
        --model meta-llama/Llama-3.1-8B-Instruct --batch-tokens 65536

The output has one record per input trajectory, written with trajectory.with_selection: loss true only on the
selected steps, and selection = {"method": "perplexity", "ratio", "model", "scores": {step index: ppl}, ...}.
Rerunning the same command resumes (records already in OUTPUT or in a part file are not scored again), also
after a kill and with a different number of ranks. Records come out in the order they were scored (longest
first); every consumer matches records by item_id.
"""
import argparse
import datetime
import glob
import json
import math
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

import devices
import runs
import trajectory

# ----------------------------------------------------------------------------- scoring


@torch.no_grad()
def step_ppls(model, batch, chunk=1024):
    """Per-step perplexities for a batch of (key, input_ids, spans) with one forward pass per batch.

    spans maps a step's conversation index to the (start, end) token range of its loss tokens; the token at
    position p is predicted by the hidden state at p - 1. Returns one {step index: ppl} dict per item. Only the
    hidden states at predicting positions go through the LM head, in chunks and in fp32, so the B x L x vocab
    logits tensor (4 GB for one 8k-token Llama-3 sequence in fp32) is never built."""
    device = next(model.parameters()).device
    longest = max(len(ids) for _, ids, _ in batch)
    ids = torch.zeros(len(batch), longest, dtype=torch.long)
    mask = torch.zeros(len(batch), longest, dtype=torch.long)
    rows, cols, seg = [], [], []  # one entry per scored token: its batch row, predicting position, segment id
    segments = []                 # (item number, step index) per segment
    for b, (_, x, spans) in enumerate(batch):
        ids[b, :len(x)] = torch.as_tensor(x)
        mask[b, :len(x)] = 1      # right padding: pads come after every real token, so a causal model's
        for step, (start, end) in sorted(spans.items()):  # real positions never see them
            if not 1 <= start < end <= len(x):
                raise ValueError(f"item {batch[b][0]!r}: step {step} has token span {(start, end)} outside 1..{len(x)}")
            rows += [b] * (end - start)
            cols += range(start - 1, end - 1)
            seg += [len(segments)] * (end - start)
            segments.append((b, step))
    if not segments:  # no step of any item fits in max_length: nothing to score
        return [{} for _ in batch]
    ids, mask = ids.to(device), mask.to(device)
    hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
    rows_t = torch.tensor(rows, dtype=torch.long, device=device)  # long even when empty (no step fits)
    cols_t = torch.tensor(cols, dtype=torch.long, device=device)
    h = hidden[rows_t, cols_t]        # (N, hidden) predicting states
    targets = ids[rows_t, cols_t + 1]  # (N,) the tokens they predict
    head = model.get_output_embeddings()
    nll = torch.cat([F.cross_entropy(head(h[i:i + chunk]).float(), targets[i:i + chunk], reduction="none")
                     for i in range(0, len(h), chunk)])
    seg_t = torch.tensor(seg, device=device)
    total = torch.zeros(len(segments), device=device, dtype=torch.float64).index_add_(0, seg_t, nll.double())
    count = torch.zeros(len(segments), device=device, dtype=torch.float64).index_add_(
        0, seg_t, torch.ones_like(nll, dtype=torch.float64))
    ppl = torch.exp(total / count).tolist()
    out = [{} for _ in batch]
    for (b, step), p in zip(segments, ppl):
        out[b][step] = p
    return out


def top_steps(scores, k):
    """The k steps with the highest perplexity; ties go to the earlier step, so reruns select the same steps."""
    return sorted(sorted(scores, key=lambda s: (-scores[s], s))[:k])


# ----------------------------------------------------------------------------- distributed output


def part_path(output, rank):
    return f"{output}.part{rank}"


def part_files(output):
    """The part files a (possibly killed, possibly other-sized) torchrun run left beside OUTPUT (not their locks)."""
    return sorted(p for p in glob.glob(f"{glob.escape(output)}.part*") if p[len(output) + 5:].isdigit())


def read_parts(paths):
    """{item_id: record} of the complete lines of part files (a partial last line from a kill is redone)."""
    found = {}
    for path in paths:
        with open(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                if not raw.endswith(b"\n") or not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                    found[rec["item_id"]] = rec
                except (ValueError, RecursionError, TypeError, KeyError):
                    raise trajectory.RecordError(f"{path}: line {n}: not a record of this script; repair or "
                                                 f"remove it") from None
    return found


def done_ids(output):
    """item_ids already scored: in OUTPUT or in any part file."""
    return set().union(*(runs.done_keys(p) for p in [output] + part_files(output)))


def merge_parts(output, order):
    """Append the records of every part file that OUTPUT lacks, in input order, then delete the parts. Safe to
    kill and rerun: OUTPUT is appended record by record and the parts go only once all is merged."""
    done, out = runs.open_resumable(output)
    parts = part_files(output)
    pending = read_parts(parts)
    merged = 0
    for item_id in order:
        if item_id in pending and item_id not in done:
            runs.append_record(out, pending[item_id])
            done.add(item_id)
            merged += 1
    out.close()
    for path in parts:
        os.remove(path)
    return merged


# ----------------------------------------------------------------------------- main


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # ---- data
    p.add_argument("--input", required=True, help="trajectories: JSONL or a JSON list (AgentTraj-L format)")
    p.add_argument("--output", required=True, help="output JSONL (resumable; one record per input trajectory)")
    p.add_argument("--force", action="store_true", help="write into an output made with other settings (model, "
                                                        "tokenizer, ratio, max length)")
    p.add_argument("--max-length", type=int, default=8192,
                   help="truncate trajectories to this many tokens, as train.py does (paper: 8192); "
                        "steps cut off get no score and are never selected")
    # ---- model
    p.add_argument("--model", required=True, help="base model path or name (the model ATLaS fine-tunes)")
    p.add_argument("--tokenizer", default=None, help="tokenizer path (default: --model)")
    p.add_argument("--chat-template-kwargs", default=None,
                   help="template variables for every render of the chat template, as JSON (e.g. "
                   "'{\"enable_thinking\": false}' for Qwen3); give train.py, perplexity.py, evaluate.py and "
                   "value_estimate.py the same")
    p.add_argument("--dtype", choices=["auto", "bfloat16", "float32"], default="auto",
                   help="weights dtype: auto = bf16 on a GPU (or a CPU) with native bf16, else float32 "
                        "(log-softmax is always fp32)")
    # ---- selection
    p.add_argument("--ratio", type=float, default=0.3,
                   help="select the top ratio of steps by perplexity per trajectory (paper: 0.3), "
                        "k = trajectory.budget(T, ratio) as in select.py")
    # ---- throughput
    p.add_argument("--batch-tokens", type=int, default=16384,
                   help="token budget per forward pass (rows x longest row, padding included)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N input records (smoke tests)")
    return p.parse_args(argv)


def check_args(args):
    """Refuse settings that make no sense (ValueError), before the input is read or a model loaded."""
    if not 0 < args.ratio <= 1:  # also refuses nan
        raise ValueError(f"--ratio must be in (0, 1], got {args.ratio}")
    for flag, value in [("--max-length", args.max_length), ("--batch-tokens", args.batch_tokens),
                        ("--limit", 1 if args.limit is None else args.limit)]:
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    runs.check_output(args.output, [args.input])


def load_model(args, device, dtype):
    """(tokenizer, model). The tokenizer first (fast): a folder that is missing or has no chat template is
    refused before the weights load. ValueError with one line on any problem."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.model)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot load the tokenizer of {args.tokenizer or args.model}: "
                         f"{' '.join(str(e).split())[:300]}") from None
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(f"{args.tokenizer or args.model}: the tokenizer has no chat_template; steps are scored on "
                         f"the model's own chat template (use an instruct/chat model folder)")
    trajectory.use_template_kwargs(tokenizer, trajectory.template_kwargs(args.chat_template_kwargs))
    try:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(device).eval()
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot load the model {args.model}: {' '.join(str(e).split())[:300]}") from None
    if getattr(model.config, "final_logit_softcapping", None):
        raise ValueError(f"{args.model} post-processes its logits (final_logit_softcapping); step_ppls applies "
                         f"only the LM head")
    return tokenizer, model


def setup(args, rank, world, device):
    """Everything that can refuse the run, in the order that wastes least: options, the input, the output (rank 0
    takes its lock and checks its settings; every rank then loads the model and opens what it appends to: OUTPUT,
    or with torchrun its own part file). Returns (records, output, tokenizer, model, dtype)."""
    check_args(args)
    records = trajectory.read_records(args.input)[:args.limit]
    dtype, why = devices.resolve_dtype(args.dtype, device.type)
    config = {**{k: v for k, v in vars(args).items() if k != "force"}, "world_size": world,
              "dtype_resolved": str(dtype), "dtype_reason": why,
              # the model by what it is, not where (runs.identity): a moved or copied output folder still resumes
              "model_id": runs.identity(args.model), "tokenizer_id": runs.identity(args.tokenizer),
              "chat_template_kwargs": trajectory.template_kwargs(args.chat_template_kwargs)}
    # one writer per output: rank 0 owns OUTPUT (the other ranks write nothing before meeting rank 0 at the first
    # barrier, and torchrun stops them when rank 0 refuses)
    compare = ["model_id", "tokenizer_id", "ratio", "max_length", "chat_template_kwargs"]
    out = runs.open_output(args.output, config, compare, force=args.force,
                           inputs=[args.input], owner=rank == 0,
                           append_to=part_path(args.output, rank) if world > 1 else None,
                           prepare=lambda done: load_model(args, device, dtype))
    tokenizer, model = out.prepared
    return records, out, tokenizer, model, dtype


def score_all(args, records, tokenizer, model, out, rank, ddp):
    """Score this rank's records, batch by batch, appending each output record as soon as it is done."""
    by_id = {rec["item_id"]: rec for rec in records}
    items, n_cut, cut_records = [], 0, 0
    for rec in records:
        tok = trajectory.tokenize_record(rec, tokenizer, max_length=args.max_length)
        items.append((rec["item_id"], tok["input_ids"], tok["spans"]))
        n_cut += tok["n_cut_steps"]
        cut_records += tok["n_cut_steps"] > 0
    n_steps = n_selected = 0
    t0, n_tokens = time.time(), 0
    bar = tqdm(total=len(items), desc=f"scoring (rank {rank})", disable=rank != 0 and ddp, unit="traj")
    for cut in devices.token_budget_batches([len(ids) for _, ids, _ in items], args.batch_tokens):
        batch = [items[k] for k in cut]
        for (item_id, ids, spans), scores in zip(batch, step_ppls(model, batch)):
            rec = by_id[item_id]
            steps = trajectory.step_indices(rec)
            k = trajectory.budget(len(steps), args.ratio)
            for s, v in scores.items():
                if not math.isfinite(v):
                    raise trajectory.RecordError(f"{args.input}: item_id {item_id!r}: step {s} has perplexity {v}")
            critical = top_steps(scores, k)
            selection = {"method": "perplexity", "ratio": args.ratio, "model": args.model,
                         "scores": {str(s): scores[s] for s in sorted(scores)},
                         "n_cut_steps": len(steps) - len(scores), "max_length": args.max_length}
            runs.append_record(out, trajectory.with_selection(rec, critical, selection))
            n_steps += len(steps)
            n_selected += len(critical)
            n_tokens += len(ids)
        bar.update(len(batch))
    bar.close()
    dt = time.time() - t0
    print(f"rank {rank}: scored {len(items)} trajectories, {n_steps} steps, selected {n_selected}; "
          f"{n_cut} steps in {cut_records} trajectories cut by --max-length {args.max_length} (never selected); "
          f"{n_tokens / max(dt, 1e-9):.0f} tokens/s")


def main(argv=None):
    args = get_args(argv)
    # ranks meet only at barriers (after reading what is done, before the merge), where one may wait for the
    # slowest for a long time: hence the long timeout
    rank, world, device = devices.init_distributed("perplexity.py", timeout=datetime.timedelta(hours=12))
    ddp = world > 1
    try:  # every refusal is one line (on the rank that refuses; torchrun then stops the others)
        records, output, tokenizer, model, dtype = setup(args, rank, world, device)
    except (ValueError, runs.OutputBusy) as e:  # RecordError is a ValueError
        raise SystemExit(f"perplexity.py: {e}") from None
    order = [rec["item_id"] for rec in records]
    try:
        # each rank has cut a partial last line off its own part file (setup); now all ranks read what is done
        if ddp:
            dist.barrier()
        done = done_ids(args.output)
        if ddp:
            dist.barrier()  # nobody writes before everybody has read
        todo = [rec for rec in records if rec["item_id"] not in done]
        mine = todo[rank::world]
        devices.print0(f"perplexity: {len(records)} trajectories, {len(done)} already done, {len(todo)} to "
                       f"score on {world} rank(s) ({len(mine)} on rank 0), {dtype} on {device.type}")
        score_all(args, mine, tokenizer, model, output.file, rank, ddp)
        output.file.close()
        if ddp:
            dist.barrier()  # every part file is complete
        if rank == 0:
            merged = merge_parts(args.output, order)
            if merged:
                print(f"merged {merged} records from part files into {args.output}")
            print(f"wrote {args.output}")
    except trajectory.RecordError as e:
        raise SystemExit(f"perplexity.py: {e}") from None
    finally:
        output.close()
    if ddp:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
