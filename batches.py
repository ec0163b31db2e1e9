"""The Batch API (half the price, its own rate limits, results within 24 h), for select.py --batch: the very same
request bodies as oracle.ask sends, as lines of a JSONL file.

    fatal = batches.run_batches(client, state, ids, line_of, finish, settings=...)

Upload the file (purpose "batch"), create a batch on it, poll, then read its output file (the answers) and error
file (the requests that failed). What a rerun must not repeat (an upload, a create) is written to the state file
before and after each such call, so that a killed run resumes the same batches and never uploads or creates twice;
a call whose answer was lost (a kill, a timeout) is found again on the server by its file name or input file before
anything is sent anew. Standard library only at import, like oracle.py.
"""
import collections
import json
import os
import time

from oracle import FatalError, ItemError, ParseError, Reply, backoff_delay, redact, reply_of

BATCH_ENDPOINT = "/v1/chat/completions"
BATCH_MAX_REQUESTS = 50_000      # OpenAI's limits per batch input file: requests, and bytes (200 MB)
BATCH_MAX_BYTES = 200 * 10 ** 6
BATCH_DISCOUNT = 0.5             # a batch's tokens cost half the list price
BATCH_ENDED = ("completed", "expired", "cancelled", "failed")


def batch_line(custom_id, request):
    """One line of a batch input file: `request` (chat_request's body, unchanged) for the chat endpoint."""
    return (json.dumps({"custom_id": custom_id, "method": "POST", "url": BATCH_ENDPOINT, "body": request}) +
            "\n").encode()


def plan_batches(ids, line_of):
    """`ids` in order, cut into input files within BATCH_MAX_REQUESTS lines and BATCH_MAX_BYTES bytes (read at call
    time, so a test can lower them) -> (lists of ids, {id: ItemError} for a request too big for any file)."""
    chunks, too_big, size = [[]], {}, 0
    for cid in ids:
        n = len(line_of(cid))
        if n > BATCH_MAX_BYTES:
            too_big[cid] = ItemError(f"the request is {n:,} bytes, more than a Batch API file may hold "
                                     f"({BATCH_MAX_BYTES:,}); select it without --batch")
            continue
        if len(chunks[-1]) >= BATCH_MAX_REQUESTS or size + n > BATCH_MAX_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(cid)
        size += n
    return [c for c in chunks if c], too_big


def read_batch_state(path):
    """The state file of run_batches ({"request", "tag", "batches"}), or None when there is none. ValueError with
    one line if it cannot be read: it holds the ids of batches that may be paid for, so it is never replaced."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        if not isinstance(state, dict) or not isinstance(state.get("batches"), list):
            raise ValueError("not a batch state object")
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the Batch API state ({e}); it names batches that may be paid for: "
                         f"repair it, or remove it to give them up") from None
    return state


def pending_batch_items(path):
    """How many requests of the state file `path` are in batches not collected yet (0 if there is no file)."""
    state = read_batch_state(path)
    return sum(len(b["items"]) for b in (state or {"batches": []})["batches"] if not b.get("collected"))


def _write_state(path, state):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, path)  # atomic: a kill leaves the old state or the new one, never half of one


def batch_call(call, what, where, max_retries, backoff, find=None):
    """call() (one Files/Batches request), retried with backoff on 429, 5xx, timeouts and dropped connections.
    Before each retry, find() looks for what the lost attempt may have made on the server, and that is taken
    instead: an upload or a create is never made twice. Any other refusal, or retries spent, is a FatalError (the
    state file keeps what was made, so a rerun resumes)."""
    import openai
    for attempt in range(max_retries + 1):
        try:
            if attempt and find is not None:
                found = find()
                if found is not None:
                    return found
            return call()
        except openai.APIStatusError as e:
            if e.status_code not in (408, 409, 429) and e.status_code < 500:
                raise FatalError(f"{what}: HTTP {e.status_code} from {where}: {redact(e.message)}") from None
            err = e
        except (openai.APITimeoutError, openai.APIConnectionError) as e:
            err = e
        if attempt < max_retries:
            time.sleep(backoff_delay(attempt, err, backoff))
    raise FatalError(f"{what}: gave up after {max_retries + 1} requests to {where}: {type(err).__name__}: "
                     f"{redact(err)}")


def _find_file(client, b):
    """The uploaded input file named b["name"] (newest first; none older than an hour before it was planned)."""
    for f in client.files.list(purpose="batch", order="desc"):
        if f.filename == b["name"]:
            return f
        if f.created_at < b["planned_at"] - 3600:
            return None
    return None


def _find_batch(client, b):
    """The batch made on b["file_id"] (the list is newest first)."""
    for x in client.batches.list(limit=100):
        if x.input_file_id == b["file_id"]:
            return x
        if x.created_at < b["planned_at"] - 3600:
            return None
    return None


def run_batches(client, state_path, ids, line_of, finish, *, settings, poll=60.0, max_retries=8, backoff=1.0,
                where="OpenAI"):
    """Send the request of every custom id in `ids` (line_of(id): its input line, batch_line) through the Batch
    API and call finish(id, body, error) once for each: `body` is the chat completion answering it (a dict), or
    None and `error` the ItemError it failed with (the batch's error file, no answer in an expired batch, a batch
    that failed validation). Returns the FatalError that stopped the run, or None.

    The state file `state_path` ({"request": settings, "tag", "batches": [{"name", "planned_at", "items",
    "file_id", "batch_id", "status", "counts", "collected"}]}) is written atomically before the upload (the plan),
    after it (file_id), after the create (batch_id) and once a batch's results are all finished (collected). A
    rerun takes up the batches not collected: their items are not sent again; a batch planned but without a
    file_id, or a file without a batch_id, is first looked for on the server (a kill can come between a call and
    its answer). Ids of `ids` in no pending batch are planned anew, within the limits (plan_batches). `settings`
    (what shapes the requests: model, max tokens, ...) must equal those of the pending batches."""
    try:
        state = read_batch_state(state_path)
    except ValueError as e:
        return FatalError(str(e))
    state = state or {"request": settings, "tag": os.urandom(4).hex(), "batches": []}
    pending = [b for b in state["batches"] if not b.get("collected")]
    if pending and state.get("request") != settings:
        diff = "; ".join(f"{k}: {state['request'].get(k)!r} before, {settings.get(k)!r} now"
                         for k in sorted(set(settings) | set(state.get("request") or {}))
                         if (state.get("request") or {}).get(k) != settings.get(k))
        return FatalError(f"{state_path} holds {len(pending)} batches not collected yet, made with other settings "
                          f"({diff}); rerun with those to collect them, or remove it to give them up")
    state["request"] = settings
    todo, sent = set(ids), {i for b in pending for i in b["items"]}
    chunks, too_big = plan_batches([i for i in ids if i not in sent], line_of)
    for cid, err in too_big.items():
        todo.discard(cid)
        finish(cid, None, err)
    fresh = set()  # planned by this run: nothing of them can be on the server yet
    base = os.path.basename(state_path).removesuffix(".batch.json")
    for chunk in chunks:
        b = {"name": f"{base}-{state['tag']}-{len(state['batches'])}.jsonl", "planned_at": int(time.time()),
             "items": chunk, "file_id": None, "batch_id": None, "status": None, "counts": None, "collected": False}
        state["batches"].append(b)
        fresh.add(b["name"])
    if not state["batches"]:
        return None  # nothing to send, nothing pending: no state file
    save = lambda: _write_state(state_path, state)  # noqa: E731
    save()
    call = lambda fn, what, find=None: batch_call(fn, what, where, max_retries, backoff, find)  # noqa: E731
    try:
        for b in state["batches"]:
            if b["collected"] or b["batch_id"]:
                continue
            new = b["name"] in fresh
            if b["file_id"] is None:
                found = None if new else call(lambda: _find_file(client, b), "looking for an uploaded file")
                if found is None:
                    b["items"] = [i for i in b["items"] if i in todo]  # a plan of an earlier run: what is left
                    if not b["items"]:
                        b["collected"] = True
                        save()
                        continue
                    data = b"".join(line_of(i) for i in b["items"])
                    found = call(lambda: client.files.create(file=(b["name"], data), purpose="batch"),
                                 f"uploading {b['name']}", find=lambda: _find_file(client, b))
                b["file_id"] = found.id
                save()
            found = None if new else call(lambda: _find_batch(client, b), "looking for a batch")
            if found is None:
                found = call(lambda: client.batches.create(input_file_id=b["file_id"], endpoint=BATCH_ENDPOINT,
                                                           completion_window="24h", metadata={"file": b["name"]}),
                             f"creating the batch of {b['file_id']}", find=lambda: _find_batch(client, b))
            b["batch_id"], b["status"] = found.id, found.status
            save()
        waiting = [b for b in state["batches"] if not b["collected"]]
        if waiting:
            n = sum(len(b["items"]) for b in waiting)
            print(f"batch: {len(waiting)} batch{'es' if len(waiting) > 1 else ''} of {n:,} requests at {where} (ids in "
                  f"{state_path}); results within 24 h, polled every {poll:g}s; a rerun of the same command resumes "
                  f"them", flush=True)
        t0 = time.time()
        while waiting:
            for b in waiting:
                x = call(lambda: client.batches.retrieve(b["batch_id"]), f"polling batch {b['batch_id']}")
                rc = x.request_counts
                b["status"], b["counts"] = x.status, rc and {"completed": rc.completed, "failed": rc.failed,
                                                                "total": rc.total}
                if x.status in BATCH_ENDED:
                    _collect(client, b, x, todo, finish, call)
                    b["collected"] = True
                    save()
            statuses = collections.Counter(b["status"] for b in waiting)
            counts = [b["counts"] or {"completed": 0, "failed": 0, "total": len(b["items"])} for b in waiting]
            print(f"batch {time.strftime('%H:%M:%S', time.gmtime(time.time() - t0))}: " +
                  ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) +
                  f"; {sum(c['completed'] for c in counts):,} completed, {sum(c['failed'] for c in counts):,} failed "
                  f"of {sum(c['total'] for c in counts):,} requests", flush=True)
            waiting = [b for b in waiting if not b["collected"]]
            if waiting:
                time.sleep(poll)
    except FatalError as e:
        return FatalError(f"{e}; the batches are kept in {state_path}: rerun the same command to resume them")
    return None


def _collect(client, b, x, todo, finish, call):
    """finish() every item of ended batch `x` still to do: its answer from the output file, its failure from the
    error file, or why it has neither (the batch expired, was cancelled or failed validation)."""
    seen, unreadable = set(), 0
    for file_id in (x.output_file_id, x.error_file_id):
        if not file_id:
            continue
        text = call(lambda: client.files.content(file_id).text, f"downloading {file_id} of batch {x.id}")
        for raw in text.splitlines():
            try:
                line = json.loads(raw) if raw.strip() else None
            except ValueError:
                line = None
            cid = line.get("custom_id") if isinstance(line, dict) else None
            if cid is None:
                unreadable += bool(raw.strip())
                continue
            if cid not in todo:  # done before, or not ours
                continue
            todo.discard(cid)
            seen.add(cid)
            resp, err = line.get("response") or {}, line.get("error")
            body = resp.get("body")
            if err:
                finish(cid, None, ItemError(f"batch {x.id}: {err.get('code')}: {redact(err.get('message'))}"))
            elif resp.get("status_code") != 200:
                msg = body.get("error", {}).get("message") if isinstance(body, dict) and \
                    isinstance(body.get("error"), dict) else body
                finish(cid, None, ItemError(f"HTTP {resp.get('status_code')} (batch {x.id}): {redact(msg)}"))
            else:
                finish(cid, body, None)
    why = f"batch {x.id} ended {x.status} without an answer for it"
    if x.status == "failed" and x.errors and x.errors.data:
        why = f"batch {x.id} failed: " + "; ".join(f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line
                                                                                  else "") for e in x.errors.data[:3])
    if unreadable:
        why += f" ({unreadable} lines of its result files could not be read)"
    for cid in b["items"]:
        if cid in todo:
            todo.discard(cid)
            finish(cid, None, ItemError(redact(why)))


def batch_reply(body, parse):
    """The Reply to one answer of a batch (`body`: its chat completion, a dict), as ask() returns it after one
    request. An answer `parse` rejects is not asked again (a rerun does): ItemError, with the tokens paid."""
    answer, finish, usage = "", None, None
    try:
        answer, finish, usage = reply_of(_objects(body))
        return Reply(parse(answer), answer, body.get("model"), usage, 1)
    except ParseError as e:
        cut = " (cut at --max-tokens)" if finish == "length" else ""
        raise ItemError(f"unparsable (one answer, through the Batch API): {redact(e)}{cut}; answer began "
                        f"{redact(answer[:160])!r}", usage) from None


def _objects(value):
    """JSON as the SDK's objects: dicts become attribute namespaces (what reply_of reads)."""
    import types
    if isinstance(value, dict):
        return types.SimpleNamespace(**{k: _objects(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_objects(v) for v in value]
    return value
