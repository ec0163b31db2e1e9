"""Talking to the oracle LLM: any OpenAI-compatible chat server (OpenAI, vLLM, llama.cpp), for select.py.

    client = oracle.make_client(base_url, timeout)   # one GET /models: no server or a refused key stops here
    reply = oracle.ask(client, prompt, parse, model="gpt-4o", max_tokens=1024)   # retried until parse() accepts
    fatal = oracle.run_pool(work, finish, items, threads=16, where="OpenAI")     # many requests in flight
    fatal = batches.run_batches(client, state, ids, line_of, finish, settings=...)  # the same, Batch API

How failures are sorted, so that a run never pays twice and never stops for one item: HTTP 429/5xx/timeouts and
dropped connections are retried with exponential backoff; a reply that is not a chat completion, or whose answer
`parse` rejects (ParseError), is asked again; then the one item fails (ItemError) and the run goes on. What no
request can survive (a refused key, an unknown model, no quota, a server gone for many items in a row) is a
FatalError and stops the run. The API key never reaches a message: redact() scrubs it.

The Batch API (half the price, its own rate limits, results within 24 h) takes the very same request bodies:
batches.py.

Standard library only at import, and no stage: the openai SDK is imported by the functions that call it, so that
select.py starts in well under a second.
"""
import collections
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
