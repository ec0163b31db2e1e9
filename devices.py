"""Where the compute runs: the compute dtype (bf16 only where it is native), torchrun's ranks and how they leave
together, and the token-budget batcher that train.py and perplexity.py share. torch is imported inside the
functions that need it.
"""
import atexit
import os
import sys


# ----------------------------------------------------------------------------- compute dtype (train, perplexity, hf)

def cpu_has_native_bf16():
    """True when this CPU multiplies bf16 natively (AVX512_BF16 or AMX-BF16 on x86, BF16 on Arm): only there is
    bf16 compute faster than fp32 on the CPU (an AVX2-only CPU emulates it and runs slower)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = set()
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags |= set(line.split(":", 1)[1].split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_dtype(name, device_type):
    """(torch dtype, reason) for `--dtype auto|bfloat16|float32` on `device_type` ("cuda" or "cpu"). auto: bf16 on
    a GPU that supports it, bf16 on a CPU with native bf16 matmul, float32 otherwise."""
    import torch
    if name == "bfloat16":
        return torch.bfloat16, "asked for"
    if name == "float32":
        return torch.float32, "asked for"
    if name != "auto":
        raise ValueError(f"--dtype {name!r}: expected auto, bfloat16 or float32")
    if device_type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "auto: the GPU supports bf16"
        return torch.float32, "auto: the GPU has no bf16"
    if cpu_has_native_bf16():
        return torch.bfloat16, "auto: the CPU has native bf16 matmul (avx512_bf16/amx_bf16)"
    return torch.float32, "auto: the CPU has no native bf16 matmul (no avx512_bf16/amx_bf16), fp32 is faster"


# ----------------------------------------------------------------------------- batching and ranks (train, perplexity)

def token_budget_batches(lengths, max_tokens, max_rows=None):
    """Indices into `lengths`, longest first, cut greedily into batches whose padded size (rows x longest row) is
    at most max_tokens and which hold at most max_rows rows; an item longer than the budget is a batch of its own.
    Longest first: neighbours have similar lengths (little padding), and an out-of-memory error shows on the first
    batch rather than hours in. The sort is stable: equal lengths keep their order."""
    batches, cur = [], []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        # cur[0] is the longest row of cur, so (len(cur) + 1) * lengths[cur[0]] is the padded size with row i
        if cur and (len(cur) == max_rows or (len(cur) + 1) * lengths[cur[0]] > max_tokens):
            batches.append(cur)
            cur = []
        cur.append(i)
    return batches + [cur] if cur else batches


def print0(*args, **kwargs):
    """print, flushed, on rank 0 only (RANK from torchrun's environment; a plain `python` run is rank 0)."""
    if int(os.environ.get("RANK", 0)) == 0:
        print(*args, **kwargs, flush=True)


def init_distributed(name, always=False, timeout=None):
    """torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) -> (rank, world_size, device); a plain `python` run is
    rank 0 of 1. The process group (NCCL on GPUs, gloo on CPUs) is made when there is more than one rank, or
    `always` (FSDP needs one even alone: then a world of one on an in-memory store). `timeout`: a
    datetime.timedelta for collectives, for ranks that may wait long for the slowest one.

    torchrun starts each worker in a session of its own, so `kill` of torchrun's process group misses them: they
    would go on working (and race a rerun's --resume, or save states after the kill). So a worker asks Linux to
    SIGKILL it the moment its launcher dies (prctl PR_SET_PDEATHSIG), and, where that is not available, watches
    its launcher and leaves with os._exit (a thread cannot end the process otherwise) within a second."""
    import torch
    import torch.distributed as dist
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if "TORCHELASTIC_RUN_ID" in os.environ:
        _leave_with_launcher(name, rank)
    backend, extra = "nccl" if use_cuda else "gloo", {} if timeout is None else {"timeout": timeout}
    if world > 1 or (always and "RANK" in os.environ):
        dist.init_process_group(backend, **extra)
    elif always:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, **extra)
    if dist.is_initialized():
        assert (dist.get_rank(), dist.get_world_size()) == (rank, world)
    return rank, world, device


def _leave_with_launcher(name, rank):
    """End this torchrun worker when its launcher dies (see init_distributed): Linux's PR_SET_PDEATHSIG, else a
    thread that polls the parent pid once a second."""
    import signal
    import threading
    import time
    launcher = os.getppid()
    try:  # torchrun's main thread starts the workers, so "parent death" is the launcher's exit
        import ctypes
        if ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL)) == 0:  # 1 = PR_SET_PDEATHSIG
            if os.getppid() != launcher:  # it died before the request took effect
                os._exit(1)
            return
    except (OSError, AttributeError):  # no prctl: not Linux
        pass

    def watch_launcher():
        while os.getppid() == launcher:
            time.sleep(1.0)
        print(f"{name} rank {rank}: the launcher (pid {launcher}) is gone; exiting", file=sys.stderr, flush=True)
        os._exit(1)
    threading.Thread(target=watch_launcher, daemon=True).start()


def refuse(name, message, code=1):
    """Refuse to go on: one line `name: message` on stderr (rank 0 only; every rank finds the same problem, and
    calls this), exit code 1 (or `code`). The other ranks wait for rank 0's line first: a rank that left at once
    would have torchrun stop rank 0 before it printed. (torchrun itself exits 1 whatever the code; the line says
    which it was.)"""
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"{name}: {message}", file=sys.stderr, flush=True)
    dist_ = sys.modules["torch"].distributed if "torch" in sys.modules else None
    if dist_ is not None and dist_.is_initialized() and dist_.get_world_size() > 1:
        dist_.barrier()
    leave(code)


def leave(code=0):
    """End this process with `code`. Once torch is imported the interpreter's own teardown is skipped (os._exit,
    after the process group is destroyed and the streams flushed): on gloo a rank's teardown racing its peer's has
    aborted a finished run (rank 1 SIGABRT at exit, rank 0 killed mid-teardown: 1 run in ~50 in CI), and a refusal's
    exit code must be the one the driver reads. The atexit handlers still run (they release the folder's lock)."""
    if "torch" not in sys.modules:
        raise SystemExit(code)
    if sys.modules["torch"].distributed.is_initialized():
        sys.modules["torch"].distributed.destroy_process_group()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def in_own_thread(fn, *args):
    """fn(*args) run in a new thread; its result is returned (its exception raised) here. glibc's malloc gives a new
    thread an arena of its own, so a loop of many short-lived allocations (the tokenizer's, in train.py) stays off
    the heap that the process's long-lived objects (the records) have grown: there its cost per item rose with the
    data (1.13-1.19x per trajectory from 1,000 to 14,485 trajectories), in its own arena it does not (1.00-1.04x).
    Ctrl-C still reaches the main thread, which waits in join()."""
    import threading
    out = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as e:  # handed to the caller
            out["error"] = e
    worker = threading.Thread(target=run, name=getattr(fn, "__name__", "worker"), daemon=True)
    worker.start()
    worker.join()
    if "error" in out:
        raise out["error"]
    return out["value"]
