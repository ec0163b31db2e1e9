"""train.py's output folder: who may write it, the model folders it saves, and the resumable state.

    out, refusal = checkpoint.open_folder(args, run_config, COMPARE, master)  # rank 0 claims --output (refusing a
                                                      # folder that holds a run, unless --resume / --overwrite, and a
                                                      # resume with other settings); every rank gets the verdict
    selection = checkpoint.selection_of(records)                # what the records were selected by
    checkpoint.load_pretrained(model, path, config, master)     # rank 0 reads the weights, every rank its shards
    checkpoint.save_hf(model, tokenizer, path, ...)             # HF folder + selection.json, loadable by vLLM,
                                                                # written beside its place and renamed when complete
    checkpoint.save_state(model, optimizer, output, step)       # sharded model + optimizer (DCP), per-rank RNG
    step, path = checkpoint.load_state(model, optimizer, output, metrics_path)   # --resume; rewinds the metrics

The state is written under <output>/state/step_N and pointed at by state/latest only once every rank has written
its shards, so a kill mid-save leaves the previous state in force. torch is imported inside the functions.
"""
import json
import os
import shutil

import runs
from trajectory import RecordError

RUN_FILES = ("config.json", "metrics.jsonl", "state", "final")  # a folder holding any of these holds a run


def open_folder(args, config, compare, master):
    """Rank 0 claims --output and every rank gets its verdict (a collective): (rank 0's Output or None, None), or
    (None, the refusal in one line) on every rank, so that all of them stop together. See claim_folder."""
    import torch.distributed as dist
    out, refusal = None, None
    if master:
        try:
            out = claim_folder(args, config, compare)
        except OSError as e:  # a full disk: name the folder, say what to do
            refusal = (f"cannot write {e.filename or args.output}: {e.strerror or e}; free space and rerun the same "
                       f"command")
        except (RecordError, runs.OutputBusy) as e:
            refusal = str(e)
    verdict = [refusal]
    dist.broadcast_object_list(verdict, src=0)
    return out, verdict[0]


def claim_folder(args, config, compare):
    """Rank 0's claim on --output (runs.open_output on a folder: its lock for the whole run, the settings kept in
    config.json and, with --resume, compared to the last run's). A folder that holds a run is refused unless
    --resume (it must have a saved state) or --overwrite (its run files are deleted). A refused run leaves no
    folder behind. Raises RecordError / OutputBusy with one line."""
    latest = os.path.join(args.output, "state", "latest")

    def check(_):
        held = [n for n in RUN_FILES if os.path.exists(os.path.join(args.output, n))]
        if held and not (args.resume or args.overwrite):
            raise RecordError(f"--output {args.output} holds a run ({', '.join(held)}); pass --resume to continue "
                              f"it or --overwrite to delete it and start over")
        if args.resume and not os.path.exists(latest):
            raise RecordError(f"--resume: no saved state in {args.output} (no state/latest): nothing to resume; "
                              f"start over with --overwrite")

    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise RecordError(f"--output {args.output} is a file, not a folder")
    if not os.path.exists(args.output) and args.resume:
        raise RecordError(f"--resume: {args.output} does not exist; nothing to resume")
    try:
        out = runs.open_output(args.output, config, compare if args.resume else [], folder=True, prepare=check,
                               flag="--overwrite", hint="resume with the same settings, or start over with --overwrite")
    except RecordError as e:
        if "the output holds a run with other settings" in str(e):
            raise RecordError(f"--resume refused: {e}") from None
        raise
    if args.overwrite:
        for n in os.listdir(args.output):
            if n in RUN_FILES[1:] or n.startswith("step_"):
                p = os.path.join(args.output, n)
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    return out


def selection_of(records, base_model=None):
    """What the training records were selected by, for the model folders (selection.json) and the report's rows:
    {"method", "ratio", "model" (the selector LLM), "n_records", "backbone" (the base model folder's name),
    "train_envs" (the envs of the records' item ids, sorted: one env is a single-task model, Tables 4 and 5)}
    when every record's `selection` agrees on method, ratio and selector model; method "complete" (ratio 1.0)
    when no record has one (AgentTraj-L itself: every step trains); None when they disagree (a mixed training set
    names no single row)."""
    from trajectory import split_item_id
    kinds = {(s.get("method"), s.get("ratio"), s.get("model")) if isinstance(s, dict) else None
             for s in (rec.get("selection") for rec in records)}
    if kinds == {None}:
        kinds = {("complete", 1.0, None)}
    if len(kinds) != 1:
        return None
    envs = set()
    for rec in records:
        try:
            envs.add(split_item_id(rec["item_id"])[0])
        except ValueError:  # an id of no env (the tests' own records): names no env
            pass
    method, ratio, model = kinds.pop()
    backbone = os.path.basename(os.path.normpath(base_model)) if base_model else None
    return {"method": method, "ratio": ratio, "model": model, "n_records": len(records), "backbone": backbone,
            "train_envs": sorted(envs)}


def why(e):
    """One line of what stopped a save: the first failed rank's own error for the distributed checkpoint's
    CheckpointException (whose text holds every rank's traceback), else the error's text."""
    failures = getattr(e, "failures", None)
    if failures:
        rank, (e, _) = next(iter(sorted(failures.items())))
        return f"rank {rank}: {type(e).__name__}: {' '.join(str(e).split())[:300]}"
    return ' '.join(str(e).split())[:300]


class SaveError(RuntimeError):
    """A save that could not be completed (a full disk, a kill of the writer's storage): raised on every rank."""


SHARD_BYTES = 5 * 1024 ** 3  # safetensors files of at most ~5 GB, as Hugging Face shards its own checkpoints


def load_pretrained(model, path, config, master, trust_remote_code=False):
    """The weights of the model folder `path` into the sharded `model` (after fully_shard and to_empty): rank 0
    alone reads them, and every rank receives its shards (the pytorch/examples FSDP2 recipe); the non-persistent
    buffers (rotary inv_freq), which no state dict holds, are broadcast from rank 0."""
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from transformers import AutoModelForCausalLM
    full_sd, buffers = {}, {}
    if master:
        ref = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch.float32,
                                                   trust_remote_code=trust_remote_code)
        full_sd, buffers = ref.state_dict(), {k: v.clone() for k, v in ref.named_buffers()}
        del ref
    set_model_state_dict(model, full_sd, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    for name, buf in model.named_buffers():
        if master:
            buf.copy_(buffers[name])
        dist.broadcast(buf, src=0)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()


def save_hf(model, tokenizer, path, save_dtype, source, selection, master, gather=False):
    """Full HF folder (safetensors + model.safetensors.index.json, the config, the tokenizer, the source's
    generation_config.json, selection.json), loadable by from_pretrained and vLLM, in the dtype the checkpoint
    came in; a collective. Written into `<path>.partial` and renamed to `path` only once all is written: a folder
    at `path` is always complete (the driver and evaluate.py never see half of one). A failed write (ENOSPC)
    removes the partial folder and raises SaveError on every rank, so that all ranks stop together.

    By default no rank holds the whole model: every rank writes its own shards with the distributed checkpoint
    (HuggingFaceStorageWriter), then rank 0 joins them into whole tensors file by file (consolidation reads the
    shards back from `<path>.partial/sharded`, so every rank must write where rank 0 can read: one machine or a
    shared filesystem). `gather=True` (train.py --save-gathered) is the older way: the full state dict gathered
    into rank 0's memory (~6 bytes per parameter there) and written with save_pretrained, for ranks with no
    shared filesystem."""
    import torch.distributed as dist
    partial, problem = f"{path}.partial", None
    if master:
        shutil.rmtree(partial, ignore_errors=True)  # left by a killed save
    from torch.distributed.checkpoint.api import CheckpointException  # a BaseException, not an Exception
    try:
        if gather:
            _write_gathered(model, partial, save_dtype, master)
        else:
            _write_sharded(model, partial, save_dtype)
    except (Exception, CheckpointException) as e:  # OSError, SafetensorError: the disk, not the model
        problem = f"cannot save {path}: {why(e)}"
    if master and problem is None:
        try:
            model.config.dtype = save_dtype  # the dtype of the saved weights, not of our fp32 master copy
            if not gather:
                model.config.save_pretrained(partial)
            tokenizer.save_pretrained(partial)
            for name in ("generation_config.json",):
                if os.path.exists(os.path.join(source, name)):
                    shutil.copy(os.path.join(source, name), partial)
            if selection is not None:
                with open(os.path.join(partial, "selection.json"), "w", encoding="utf-8") as f:
                    json.dump(selection, f, indent=1)
            if os.path.isdir(path):  # an older save of the same step (a resumed run): replaced whole
                shutil.rmtree(path)
            os.replace(partial, path)
        except Exception as e:
            problem = f"cannot save {path}: {why(e)}"
    if master and problem is not None:
        shutil.rmtree(partial, ignore_errors=True)
    seen = [None] * dist.get_world_size()
    dist.all_gather_object(seen, problem)  # every rank learns any rank's failure, and all stop together
    # a collective's root may return before the others have received: a barrier returns on no rank before every
    # rank is in it
    dist.barrier()
    failed = [p for p in seen if p]
    if failed:
        raise SaveError(failed[0])


def _write_sharded(model, partial, save_dtype):
    """Every rank writes its shards of the weights (cast to save_dtype), rank 0 consolidates them into files of at
    most SHARD_BYTES and writes the index; the shards are removed after."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    dist.barrier()  # rank 0 has removed a killed save's leftovers
    seen, tied = set(), set()  # a tied weight (lm_head = embed_tokens) is saved once, under its first name, as
    for name, p in model.named_parameters(remove_duplicate=False):  # HF saves it (same names on every rank)
        if id(p) in seen:
            tied.add(name)
        seen.add(id(p))
    sd = {k: v.to(save_dtype) for k, v in get_model_state_dict(model).items() if k not in tied}
    files, index, size = {}, 1, 0
    for k, v in sd.items():  # consecutive tensors into files of at most SHARD_BYTES (a larger tensor alone)
        n = v.numel() * v.element_size()
        if size and size + n > SHARD_BYTES:
            index, size = index + 1, 0
        files[k] = index
        size += n
    dcp.save(sd, storage_writer=dcp.HuggingFaceStorageWriter(partial, fqn_to_index_mapping=files,
                                                             save_distributed=True, enable_consolidation=True))
    if dist.get_rank() == 0:
        shutil.rmtree(os.path.join(partial, "sharded"), ignore_errors=True)


def _write_gathered(model, partial, save_dtype, master):
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if master:
        model.config.dtype = save_dtype
        model.save_pretrained(partial, state_dict={k: v.to(save_dtype) for k, v in sd.items()})


def save_state(model, optimizer, output, step):
    """Resumable state: sharded model + optimizer (each rank writes its shards), this rank's RNG; the data
    position is `step` itself, since the order of every epoch is a function of (seed, epoch)."""
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict
    rank, world_size = dist.get_rank(), dist.get_world_size()
    state_dir = os.path.join(output, "state")
    path = os.path.join(state_dir, f"step_{step}")
    model_sd, optim_sd = get_state_dict(model, optimizer)
    problem = None
    from torch.distributed.checkpoint.api import CheckpointException  # a BaseException, not an Exception
    try:  # DCP raises on every rank when one cannot write (CheckpointException)
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=path)
        torch.save(torch.get_rng_state(), os.path.join(path, f"rng_{rank}.pt"))
    except (Exception, CheckpointException) as e:
        problem = f"cannot save the state {path}: {why(e)}"
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    failed = torch.tensor(float(problem is not None), device=device)
    dist.all_reduce(failed)  # every rank learns that one could not write, and all stop ("latest" stays put)
    if failed.item():
        raise SaveError(problem or f"cannot save the state {path}: another rank could not write its shards")
    if rank == 0:  # point "latest" at it only once complete, then drop the older states
        with open(os.path.join(state_dir, "latest.tmp"), "w") as f:
            json.dump({"step": step, "world_size": world_size}, f)
        os.replace(os.path.join(state_dir, "latest.tmp"), os.path.join(state_dir, "latest"))
        for old in os.listdir(state_dir):
            if old.startswith("step_") and old != f"step_{step}":
                shutil.rmtree(os.path.join(state_dir, old))
    dist.barrier()


def load_state(model, optimizer, output, metrics_path):
    """--resume: load the latest state into model and optimizer (any world size: DCP reshards), this rank's RNG
    when the world size is the same, and cut the metrics file back to that step (the killed run's later steps are
    done again). Returns (the step to continue from, the state's path)."""
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    with open(os.path.join(output, "state", "latest")) as f:
        step = json.load(f)["step"]
    path = os.path.join(output, "state", f"step_{step}")
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=path)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    rng = os.path.join(path, f"rng_{dist.get_rank()}.pt")
    if os.path.exists(rng):  # absent if the world size changed
        torch.set_rng_state(torch.load(rng))
    if dist.get_rank() == 0 and os.path.exists(metrics_path):  # forget the steps the killed run did after it
        with open(metrics_path) as f:
            kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
        with open(metrics_path, "w") as f:
            f.writelines(kept)
    return step, path
