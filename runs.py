"""How every stage opens its output: one writer at a time, the settings kept beside it, resumed after a kill,
nothing left behind when the run is refused. Standard library only (select.py starts fast).

    out = runs.open_output(args.output, vars(args), compare=["method", "ratio"], force=args.force,
                           prepare=lambda done: load_model(args))   # whatever may still refuse the run
    for rec in todo(records, out.done):
        out.append(with_selection(rec, critical, selection))
    out.close()

`open_output` is the one call: select.py, perplexity.py, value_estimate.py, evaluate.py and train.py (a folder)
all open their output with it. Below it: the lock, the kept settings, and the resumable JSONL file.
"""
import json
import os

from trajectory import RecordError


# ----------------------------------------------------------------------------- the one call

class Output:
    """An opened output. `done`: the keys (item_ids) of the records it already holds (None for a folder);
    `file`: open for appending (None for a folder); `prepared`: what `prepare` returned; `config`: the settings
    kept. `append(rec)` writes one record as one flushed line; `close()` closes the file and drops the locks."""

    def __init__(self, path, locks, done, file, prepared, config):
        self.path, self.locks, self.done, self.file, self.prepared, self.config = path, locks, done, file, \
            prepared, config

    def append(self, rec):
        append_record(self.file, rec)

    def close(self):
        if self.file is not None:
            self.file.close()
        for lock in self.locks:
            lock.close()


def open_output(path, config, compare, *, force=False, flag="--force", hint=None, key="item_id", prepare=None,
                also_lock=(), append_to=None, owner=True, folder=False, inputs=()):
    """Open a stage's output `path` for this run, in the order that refuses a run before it costs anything:

      1. take the one-writer lock of `path` (and of each path in `also_lock`, e.g. a second output);
      2. check `config` against the settings an earlier run kept beside the output (`<path>.config.json`, for a
         folder `<path>/config.json`): a key of `compare` that differs is refused unless `force` (`flag` and
         `hint` word the refusal);
      3. read what is done: the keys of the complete records in the output;
      4. `prepare(done)`: whatever may still refuse the run (load the model, build the policy, check a folder);
         its value is `.prepared`;
      5. keep the settings, and open the output (or `append_to`, a torchrun rank's part file) for appending; a
         partial last line left by a kill is cut off, so that item is simply done again.

    Whatever is raised on the way drops the locks and removes what this call made (the settings file, the
    folder), so a refused run leaves no trace. `owner=False` (the other ranks of a torchrun job, which follow rank
    0's verdict) skips the lock and the settings. `folder=True`: `path` is a folder (train.py); nothing is opened
    for appending. `inputs`: files the run reads, which the output must not be. Returns an Output."""
    path = str(path) if folder else check_output(path, inputs)
    cfg_path = os.path.join(path, "config.json") if folder else f"{path}.config.json"
    made_folder = folder and not os.path.exists(path)
    had_config = os.path.exists(cfg_path)
    locks, file, wrote_config = [], None, False
    try:
        if folder:
            if os.path.exists(path) and not os.path.isdir(path):
                raise RecordError(f"{path} is a file, not a folder")
            os.makedirs(path, exist_ok=True)
        if owner:
            locks += [lock_output(p) for p in [path, *also_lock] if p]
            config = check_config(cfg_path, config, compare, force, flag, hint)
        # the output is read once: its keys now, for prepare; where its complete lines end, to append after them
        done, good = (None, 0) if folder else _scan_output(path, key) if os.path.exists(path) else (set(), 0)
        prepared = prepare(done) if prepare is not None else None
        if owner:
            config = keep_config(cfg_path, config, compare, force, flag, hint)
            wrote_config = True
        if append_to is not None:  # a torchrun rank's part file: what is done there is its own
            done, file = open_resumable(append_to, key)
        elif not folder:
            file = _append_from(path, good)
    except BaseException:
        for lock in locks:
            lock.close()
        if wrote_config and not had_config and os.path.exists(cfg_path):  # ours alone: never another run's
            os.remove(cfg_path)
        if made_folder and os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)
        raise
    return Output(path, locks, done, file, prepared, config)


# ----------------------------------------------------------------------------- one writer per output
# The output's lock is held for the whole run. Its file holds the holder's pid and command line, so that a
# refusal names the other process.

class OutputBusy(RuntimeError):
    """Another live process writes the same output."""


class OutputLock:
    """The one-writer lock of an output, held until close() (or the process ends). close() removes the lock file,
    so a finished run leaves nothing behind; a killed run leaves the file, which does not block the next one."""

    def __init__(self, path, lock_path, f):
        self.path, self.lock_path, self.f = path, lock_path, f

    def close(self):
        if self.f is None:
            return
        try:  # unlink while still holding the lock: a waiting opener of the old file retries on the new inode
            if os.stat(self.lock_path).st_ino == os.fstat(self.f.fileno()).st_ino:
                os.unlink(self.lock_path)
        except OSError:
            pass
        self.f.close()
        self.f = None


def lock_output(path):
    """Take the one-writer lock of output `path` (a file or train.py's folder) for this process and return it
    (an OutputLock); keep it for as long as the run writes and close() it at the end.

    The lock is an flock on `<path>.lock` (a folder: `<path>/.lock`), which the kernel drops when its process dies,
    so a lock a killed run left behind never blocks the next one. The file holds the holder's pid and command line,
    so that the refusal can name the other process. Raises OutputBusy naming it."""
    import atexit
    import fcntl
    import sys
    lock_path = os.path.join(path, ".lock") if os.path.isdir(path) else f"{path}.lock"
    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    while True:
        f = open(lock_path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise OutputBusy(f"{path}: another run is writing this output ({holder}); wait for it to finish or stop "
                             f"it (a lock left by a killed run does not block)") from None
        try:  # the holder we waited on may have removed the file in between: lock the file that is there now
            if os.stat(lock_path).st_ino == os.fstat(f.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        f.close()
    lock = OutputLock(path, lock_path, f)
    try:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}: {' '.join(sys.argv)[:300]}")
        f.flush()
    except OSError:  # a full disk: the lock file is empty and ours; leave nothing behind
        lock.close()
        raise
    atexit.register(lock.close)
    return lock


# ----------------------------------------------------------------------------- the settings kept beside it

SECRET_WORDS = ("key", "token", "secret", "password")


def public_config(config):
    """`config` (a dict of settings) without secrets: a setting whose name holds key/token/secret/password and
    whose value is a string is replaced by `<name>_set: true|false` (whether one was given), never its value."""
    out = {}
    for k, v in config.items():
        if isinstance(v, str) and any(w in k.lower() for w in SECRET_WORDS) and not k.lower().endswith("tokens"):
            out[f"{k}_set"] = bool(v) and v != "EMPTY"
        else:
            out[k] = v
    return out


def keep_config(path, config, compare, force=False, flag="--force", hint=None):
    """Write the settings `config` of a run to `path` (JSON, secrets removed), after checking them against the
    settings saved there by an earlier run into the same output: if any key named in `compare` differs, raise
    RecordError naming each difference, unless `force` (the caller's `flag` says so; `hint` replaces the advice at
    the end of the message). Returns the config written."""
    config = check_config(path, config, compare, force, flag, hint)
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=1, default=str)
        os.replace(tmp, path)
    except OSError:  # a full disk: the settings kept are the last complete ones, and no half file is left
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return config


def identity(path, edge=1 << 20):
    """What a path in a run's settings names, not where it is, so that an output folder moved or copied elsewhere
    (with its models and inputs) still resumes: a model folder -> a hash of its config.json and of each weight
    file's name, size, first and last `edge` bytes (two fine-tunings of one base differ in every tensor; reading
    a few MB, not the weights); a file -> the sha256 of its bytes; anything else (a hosted model's name, None) is
    itself."""
    import hashlib
    if not isinstance(path, str) or not os.path.exists(path):
        return path
    h = hashlib.sha256()
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            return os.path.abspath(path)
        with open(os.path.join(path, "config.json"), "rb") as f:
            h.update(f.read())
        for name in sorted(os.listdir(path)):
            if name.endswith((".safetensors", ".bin")):
                size = os.path.getsize(os.path.join(path, name))
                h.update(f"{name} {size}".encode())
                with open(os.path.join(path, name), "rb") as f:
                    h.update(f.read(edge))
                    f.seek(max(0, size - edge))
                    h.update(f.read(edge))
        return "folder:" + h.hexdigest()[:16]
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()[:16]


def check_config(path, config, compare, force=False, flag="--force", hint=None):
    """keep_config's check alone, writing nothing (a stage calls it before loading a model, and keep_config once
    the run is sure to start, so that a refused run leaves no config behind). Returns public_config(config)."""
    config = public_config(config)
    if os.path.exists(path) and not force:
        try:
            with open(path, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError) as e:
            raise RecordError(f"{path}: cannot read the settings of the earlier run ({e}); remove it or pass "
                              f"{flag}") from None
        if not isinstance(old, dict):
            raise RecordError(f"{path}: not a settings object; remove it or pass {flag}")
        diff = [f"{k}: {old.get(k)!r} before, {config.get(k)!r} now" for k in compare
                if k in old and old.get(k) != config.get(k)]
        if diff:
            hint = hint or f"write to another output, or pass {flag} to mix them"
            raise RecordError(f"{path}: the output holds a run with other settings ({'; '.join(diff)}); {hint}")
    return config


# ----------------------------------------------------------------------------- resumable JSONL output

def open_resumable(path, key="item_id"):
    """Open `path` for appending and return (done_keys, file). A run killed mid-write can leave a partial last
    line (no newline): it is cut off here (that item is simply done again), so a rerun never sees a broken or
    duplicated record. A broken line with more lines after it cannot come from a kill: that is an error, never a
    reason to cut off the good records behind it. Writers append one complete line per record with
    `append_record` and flush each time."""
    path = check_output(path)
    done, good = _scan_output(path, key) if os.path.exists(path) else (set(), 0)
    return done, _append_from(path, good)


def _append_from(path, good):
    """`path` opened for appending after its first `good` bytes (what follows is a kill's partial last line)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if os.path.exists(path) and good != os.path.getsize(path):
        with open(path, "rb+") as f:
            f.truncate(good)
    return open(path, "a", encoding="utf-8")


def done_keys(path, key="item_id"):
    """The keys (item_ids) already in output `path`, read only (a dry run, other ranks' part files): what
    open_resumable would return, without cutting off a partial last line. An empty set if there is no file."""
    return _scan_output(str(path), key)[0] if os.path.isfile(path) else set()


def _scan_output(path, key):
    """(keys of the complete records, bytes up to the end of the last complete line) of an output file."""
    done, good = set(), 0
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                break  # partial last line from a kill
            if raw.strip():
                try:
                    rec = json.loads(raw)
                except (ValueError, RecursionError):  # bad JSON, bytes that are not UTF-8, nesting
                    raise RecordError(f"{path}: line {n}: not a JSON record, and a kill can only cut the last "
                                      f"line; repair or remove it") from None
                if not isinstance(rec, dict) or not isinstance(rec.get(key), (str, int)):
                    raise RecordError(f"{path}: line {n}: a record without {key!r}")
                done.add(rec[key])
            good += len(raw)
    return done, good


def check_output(path, inputs=(), write=True):
    """`path` as a usable output file: not a directory, not one of the `inputs` (appending to the file being read
    would read its own output), its folder creatable (unless not `write`: a dry run that only reads what is
    there). Raises RecordError naming the problem; returns str(path)."""
    path = str(path)
    if os.path.isdir(path):
        raise RecordError(f"{path}: is a directory; the output is a JSONL file")
    for other in inputs:
        if other is not None and (os.path.realpath(path) == os.path.realpath(str(other)) or
                                  (os.path.exists(path) and os.path.exists(other) and os.path.samefile(path, other))):
            raise RecordError(f"{path}: the output is also an input ({other}); write to another file")
    if not write:
        return path
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):  # the folder is made when the output is opened; its nearest existing
        folder = os.path.dirname(folder)  # ancestor must be a writable folder
    if not os.path.isdir(folder):
        raise RecordError(f"{path}: cannot be written ({folder} is a file, not a folder)")
    if not os.access(folder, os.W_OK):
        raise RecordError(f"{path}: cannot be written (the folder {folder} is read-only)")
    return path


def append_record(f, rec):
    """Append one record as one line in a single write, then flush, so a kill loses at most this line."""
    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    f.flush()


def write_jsonl(path, records):
    """Write records to `path` atomically (temp file + rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
