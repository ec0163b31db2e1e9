"""Talking to the oracle LLM: any OpenAI-compatible chat server (OpenAI, vLLM, llama.cpp), for select.py.

    client = oracle.make_client(base_url, timeout)   # one GET /models: no server or a refused key stops here
    reply = oracle.ask(client, prompt, parse, model="gpt-4o", max_tokens=1024)   # retried until parse() accepts
    fatal = oracle.run_pool(work, finish, items, threads=16, where="OpenAI")     # many requests in flight
    fatal = oracle.run_batches(client, state, ids, line_of, finish, settings=...)  # the same through the Batch API

How failures are sorted, so that a run never pays twice and never stops for one item: HTTP 429/5xx/timeouts and
dropped connections are retried with exponential backoff; a reply that is not a chat completion, or whose answer
`parse` rejects (ParseError), is asked again; then the one item fails (ItemError) and the run goes on. What no
request can survive (a refused key, an unknown model, no quota, a server gone for many items in a row) is a
FatalError and stops the run. The API key never reaches a message: redact() scrubs it.

The Batch API (half the price, its own rate limits, results within 24 h) takes the very same request bodies as a
JSONL file. run_batches keeps every file and batch id in a state file, written before and after each call that
costs, so that a killed run resumes the same batches and never uploads or creates twice (see its docstring).

Standard library only at import, and no stage: the openai SDK is imported by the functions that call it, so that
select.py starts in well under a second.
"""
import collections
import json
import os
import random
import re
import threading
import time

# USD per 1M (input, output) tokens, OpenAI list prices (standard tier, checked 2024-11; the Batch API halves
# them). select.py's --price overrides; other models need --price for a cost estimate.
PRICES = {"gpt-4o": (2.50, 10.00), "gpt-4o-2024-08-06": (2.50, 10.00), "gpt-4o-2024-11-20": (2.50, 10.00),
          "gpt-4o-2024-05-13": (5.00, 15.00), "gpt-4o-mini": (0.15, 0.60)}
SECRETS = []  # the API key, so that redact() can scrub it from every message we print or write


class ParseError(ValueError):
    """The answer cannot be used (the reply is not a chat completion, or it names no usable step): the request is
    repeated, then the item fails."""


class ItemError(Exception):
    """This item failed (after retries); it goes to the errors file and is retried by the next run.
    `unreachable`: it failed because no connection to the server could be made."""
    def __init__(self, message, usage=None, unreachable=False):
        super().__init__(message)
        self.usage, self.unreachable = usage, unreachable


class FatalError(Exception):
    """No request can succeed (bad key, unknown model, no quota, no server): the run stops."""


def redact(text):
    """`text` without the API key (nor anything that looks like an OpenAI key, masked or not)."""
    text = str(text)
    for s in SECRETS:
        text = text.replace(s, "***")
    return re.sub(r"\bsk-[A-Za-z0-9_*.\-]{4,}", "sk-***", text)


# ----------------------------------------------------------------------------- the client and one request

def make_client(base_url=None, timeout=120.0):
    """The OpenAI client for `base_url` (None: OpenAI; the key comes from OPENAI_API_KEY), after one GET /models:
    a server that cannot be reached or refuses the key stops the run here, before any output is made. ValueError
    with one line if so."""
    key = os.environ.get("OPENAI_API_KEY")
    if not key and not base_url:
        raise ValueError("set OPENAI_API_KEY (or pass --base-url for a local server that needs no key)")
    if key:
        SECRETS.append(key)
    import openai
    # the SDK's own retries are off: complete() retries, so the attempts it counts are the real ones
    client = openai.OpenAI(api_key=key or "no-key", base_url=base_url, timeout=timeout, max_retries=0)
    try:
        client.with_options(timeout=min(timeout, 30.0)).models.list()
    except openai.APITimeoutError:
        pass  # a busy server: the requests will tell
    except openai.APIConnectionError as e:
        raise ValueError(f"cannot reach {base_url or 'OpenAI'}: {redact(e.__cause__ or e)}") from None
    except openai.APIStatusError as e:
        if e.status_code in (401, 403):
            raise ValueError(f"HTTP {e.status_code} from {base_url or 'OpenAI'}: {redact(e.message)}") from None
    except Exception:
        pass  # a server without /models (or with an odd answer there): the requests will tell
    return client


def backoff_delay(attempt, err, base):
    """Exponential backoff with jitter; a server's retry-after(-ms) header wins when it asks for longer."""
    delay = min(60.0, base * 2 ** attempt) * random.uniform(0.5, 1.0)
    headers = getattr(getattr(err, "response", None), "headers", None) or {}
    try:
        if "retry-after-ms" in headers:
            delay = max(delay, float(headers["retry-after-ms"]) / 1000)
        elif "retry-after" in headers:
            delay = max(delay, float(headers["retry-after"]))
    except ValueError:
        pass
    return min(delay, 120.0)


def complete(client, request, max_retries, backoff, where):
    """One chat completion (`request`: the keyword arguments of chat.completions.create), retried with backoff on
    429, 5xx, timeouts and dropped connections. Returns (response, number of HTTP requests made). A 4xx that no
    retry can mend fails the item (a prompt too long) or, for the key, the model or the quota, the run."""
    import openai
    for attempt in range(max_retries + 1):
        try:
            return client.chat.completions.create(**request), attempt + 1
        except openai.APIStatusError as e:
            if e.status_code in (401, 403, 404) or getattr(e, "code", None) == "insufficient_quota":
                raise FatalError(f"HTTP {e.status_code} from {where}: {redact(e.message)}")
            if e.status_code not in (408, 409, 429) and e.status_code < 500:
                raise ItemError(f"HTTP {e.status_code}: {redact(e.message)}")  # e.g. 400 prompt too long
            err = e
        except (openai.APITimeoutError, openai.APIConnectionError) as e:
            err = e
        if attempt < max_retries:
            time.sleep(backoff_delay(attempt, err, backoff))
    unreachable = isinstance(err, openai.APIConnectionError) and not isinstance(err, openai.APITimeoutError)
    raise ItemError(f"gave up after {max_retries + 1} requests: {type(err).__name__}: {redact(err)}",
                    unreachable=unreachable)


def reply_of(resp):
    """(answer text, finish_reason, usage) of a chat completion. A reply of another shape (an HTML page or a cut-off
    body behind a 200, no choices, `content` that is neither text nor a list of text parts) is a ParseError: the
    item is asked again, then goes to the errors file."""
    if isinstance(resp, str):  # the SDK hands back the body as text when it is not JSON
        raise ParseError(f"the reply is not a JSON chat completion but {resp[:80]!r}")
    choices = getattr(resp, "choices", None)
    if not isinstance(choices, list) or not choices:
        raise ParseError("the reply has no choices")
    choice = choices[0]
    content = getattr(getattr(choice, "message", None), "content", None)
    if isinstance(content, list):  # content parts, as some servers send: their text, in order
        parts = [p.get("text") if isinstance(p, dict) else getattr(p, "text", None) for p in content]
        content = "".join(parts) if all(isinstance(t, str) for t in parts) else None
        if content is None:
            raise ParseError("the reply's content is a list that is not made of text parts")
    if content is not None and not isinstance(content, str):
        raise ParseError(f"the reply's content is a {type(content).__name__}, not text")
    usage = {}
    for name in ("prompt_tokens", "completion_tokens"):
        n = getattr(getattr(resp, "usage", None), name, None)
        usage[name] = n if isinstance(n, int) and not isinstance(n, bool) else 0
    return content or "", getattr(choice, "finish_reason", None), usage


# ----------------------------------------------------------------------------- asking until the answer is usable

Reply = collections.namedtuple("Reply", "parsed answer served_by usage attempts")


def chat_request(prompt, *, model, max_tokens, response_format=None):
    """The body of the one chat request for `prompt`: the one user message, temperature 0. ask() sends it, and a
    batch's input file carries it unchanged, so that both paths ask exactly the same."""
    request = dict(model=model, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=max_tokens)
    if response_format is not None:
        request["response_format"] = response_format
    return request


def ask(client, prompt, parse, *, model, max_tokens, response_format=None, parse_retries=2, max_retries=8,
        backoff=1.0, where="OpenAI"):
    """Send `prompt` as the one user message (temperature 0) until `parse(answer text)` returns without a
    ParseError: at most 1 + parse_retries answers. Returns a Reply: what parse returned, the answer, the model that
    served it, the tokens of every answer summed, and the HTTP requests made. Raises ItemError with the last
    problem (and the tokens paid for), FatalError when no request can succeed. `where` names the server."""
    request = chat_request(prompt, model=model, max_tokens=max_tokens, response_format=response_format)
    usage, requests, problem = {"prompt_tokens": 0, "completion_tokens": 0}, 0, None
    for _ in range(parse_retries + 1):
        try:
            resp, n = complete(client, request, max_retries, backoff, where)
        except ItemError as e:
            raise ItemError(f"{e}" + (f" (after {requests} earlier requests)" if requests else ""), usage,
                            e.unreachable) from None
        except ValueError as e:  # a 200 whose JSON body the SDK cannot read (cut off, not JSON)
            requests += 1
            problem = f"the reply is not JSON ({type(e).__name__}: {e})"
            continue
        requests += n
        answer, finish = "", None
        try:
            answer, finish, got = reply_of(resp)
            for name in usage:
                usage[name] += got[name]
            parsed = parse(answer)
        except ParseError as e:
            cut = " (cut at --max-tokens)" if finish == "length" else ""
            problem = f"{e}{cut}; answer began {answer[:160]!r}"
            continue
        return Reply(parsed, answer, getattr(resp, "model", None), usage, requests)
    raise ItemError(f"unparsable after {parse_retries + 1} answers ({requests} requests): {redact(problem)}", usage)


# ----------------------------------------------------------------------------- many requests in flight

def run_pool(work, finish, items, threads, where="OpenAI"):
    """work(item) for every item on `threads` daemon threads, each followed by finish(item, result, error) under
    one lock (the writer): `result` is what work returned, or None and `error` the ItemError it failed with (any
    exception of work() other than FatalError is that item's own). Returns what stopped the run, or None when every
    item was done: a FatalError raised by work or finish, any other exception of finish, or max(4, 2 x threads)
    items in a row that could not reach the server `where` (it went away: their retries would all be spent)."""
    items, take, write = iter(items), threading.Lock(), threading.Lock()
    stop, stopped, fatal, in_a_row = threading.Event(), threading.Event(), [], [0]

    def one(item):
        result, err = None, None
        try:
            result = work(item)
        except FatalError:
            raise
        except ItemError as e:
            err = e
        except Exception as e:  # anything else that goes wrong with this one item (a bug, an odd reply)
            err = ItemError(f"{type(e).__name__}: {e}")
        with write:
            if stopped.is_set():
                return  # the run is stopping: nothing more is written
            finish(item, result, err)
            in_a_row[0] = in_a_row[0] + 1 if err is not None and err.unreachable else 0
            if in_a_row[0] >= max(4, 2 * threads):
                raise FatalError(f"the last {in_a_row[0]} items could not reach {where} ({redact(err)})")

    def worker():
        while not stop.is_set():
            with take:
                item = next(items, None)
            if item is None:
                return
            try:
                one(item)
            except Exception as e:  # one() keeps an item's own failures: what escapes it stops the run
                fatal.append(e if isinstance(e, FatalError) else FatalError(f"{type(e).__name__}: {e}"))
                stop.set()

    # daemon threads, so that a stop never waits for the requests in flight (their items are simply redone)
    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    try:
        while not stop.is_set() and any(t.is_alive() for t in pool):
            stop.wait(0.05)
    finally:
        stop.set()  # also on Ctrl-C: no worker takes another item
        held = write.acquire(timeout=10)  # never leave in the middle of writing a record
        stopped.set()
        if held:
            write.release()
    return fatal[0] if fatal else None


# ----------------------------------------------------------------------------- the Batch API (half price, within 24 h)
# The same request bodies, as lines of a JSONL file: upload it (purpose "batch"), create a batch on it, poll, then
# read its output file (the answers) and error file (the requests that failed). What a rerun must not repeat (an
# upload, a create) is written to the state file before and after each such call; a call whose answer was lost
# (a kill, a timeout) is found again on the server by its file name or input file before anything is sent anew.

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


# ----------------------------------------------------------------------------- what a run will cost

def count_tokens(model):
    """A prompt-token counter and its name: tiktoken's encoding for the model if tiktoken is installed and has
    its encoding file (it downloads it once), else the usual 4-characters-per-token estimate."""
    try:
        import tiktoken
        enc = tiktoken.encoding_for_model(model)
        return (lambda s: len(enc.encode(s))), f"tiktoken {enc.name}"
    except Exception:
        return (lambda s: (len(s) + 3) // 4), "estimate: characters / 4 (tiktoken not available)"
