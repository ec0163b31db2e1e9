"""A stand-in for an OpenAI-compatible oracle, for the tests, the demo and bench/bench_select.py.

Serves POST /v1/chat/completions with the standard library only. It reads select.py's prompt (the labelled
conversation, the selectable steps and the budget), picks steps deterministically from the trajectory's first
turn (so a test can recompute "the answer the server gave" for any record with `scripted_answer`), and writes
the answer the way GPT-4o does: the paper's free-text format in a few styles, or the structured-output JSON when
the request carries a response_format with a schema (OpenAI's json_schema, or llama-cpp-python's json_object +
schema; one without its schema is refused with 400). Faults can be injected per item and attempt.

    python tests/oracle_server.py --port 8011 --latency 0.2                 # the benchmark's server
    curl http://127.0.0.1:8011/stats     # requests served, first arrival and the time of every answer (unix)
    python tests/oracle_server.py --port 8011 --faults 429,500,garbage      # every item: 2 HTTP errors, then junk,
                                                                            # then a good answer
    python select.py --input x.jsonl --output y.jsonl --base-url http://127.0.0.1:8011/v1

Faults (one per attempt of an item, in order; then the item is answered well):
    429 / 500 / 503   HTTP error with an OpenAI-style error body (429 carries retry-after-ms)
    slow              sleep --slow seconds before answering (the client's timeout must fire)
    garbage           200 with text that names no step
    badjson           200 whose content is not JSON (in either mode)
    out_of_range      200 whose list adds non-steps (0, the "Ok." turn, a human turn, 999), a duplicate and, when
                      the trajectory has more steps than the budget, extra steps beyond the budget (listed last)
    none_valid        200 that names only indices that are not steps
    html              200 with an HTML page as the body (a proxy's error page)
    truncated         200 whose JSON body is cut off in the middle
    parts             200 whose content is a list of text parts (some servers send them): a usable answer
    bad_content       200 whose content is a list of numbers
    no_choices        200 with an empty list of choices
    surrogate         200 whose content holds a lone surrogate (JSON escape \\ud800) inside a usable answer
    echo_key          400 whose message repeats the request's Authorization header (a key-leak trap)
    401               401 "Incorrect API key provided: <the key>" (as OpenAI does, but unmasked)

`make_records` writes synthetic AgentTraj-L-like trajectories for the tests and the benchmark.
"""
import argparse
import hashlib
import json
import random
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CANONICAL = ["Plan Creation", "Critical Observation", "Critical Action", "Self Correction"]
# What the server may call each category in free text, and the canonical name select.py must map it to.
LABELS = {"Plan Creation": "Plan Creation", "planning": "Plan Creation",
          "Critical Observation": "Critical Observation", "key observation": "Critical Observation",
          "Critical Action": "Critical Action", "pivotal action": "Critical Action",
          "Self Correction": "Self Correction", "recall": "Self Correction"}


# ----------------------------------------------------------------------------- synthetic trajectories

ENVS = {
    "webshop": ("search[{}]", "click[{}]", "You are web shopping. I will give you instructions about what to do."),
    "alfworld": ("go to {}", "take {} from shelf 1", "Interact with a household to solve a task."),
    "babyai": ("go to the {}", "pick up the {}", "You are an exploration master that wants to finish every goal."),
    "sciworld": ("look at {}", "use thermometer on {}", "You are a helpful assistant doing some scientific experiment."),
}
WORDS = "red blue green key door box ball lamp table mug apple sink drawer shelf jar seed fork café naïve".split()


def make_records(n, seed=0, min_steps=2, max_steps=24, envs=tuple(ENVS)):
    """`n` valid AgentTraj-L-like records: instruction, "Ok.", then observation / Thought+Action steps (loss true).
    Every first turn is unique (the server keys its answers on it). Values hold some non-ASCII text."""
    rng = random.Random(seed)
    recs = []
    for i in range(n):
        env = envs[i % len(envs)]
        act1, act2, intro = ENVS[env]
        task = " ".join(rng.choice(WORDS) for _ in range(6))
        conv = [{"from": "human", "loss": None,
                 "value": f"{intro} Task #{seed}-{i}: {task}.\n" + "Rules: think, then act. " * 20},
                {"from": "gpt", "loss": False, "value": "Ok."}]
        for t in range(rng.randint(min_steps, max_steps)):
            obs = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 60)))
            conv.append({"from": "human", "loss": None, "value": f"Observation {t}: {obs}"})
            act = (act1 if t % 2 else act2).format(rng.choice(WORDS))
            thought = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30)))
            conv.append({"from": "gpt", "loss": True, "value": f"Thought: {thought}\nAction: {act}"})
        recs.append({"item_id": f"{env}_{seed}_{i}", "conversations": conv})
    return recs


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------- the scripted oracle

def budget_of(n_steps, ratio):
    """Same rule as trajectory.budget, restated so the server does not import the project."""
    import math
    return min(n_steps, max(1, math.floor(ratio * n_steps + 1e-9)))


def scripted_choice(first_turn, steps, k):
    """The server's pick for a trajectory: (style, [(index, label, canonical category)]), a function of the first
    turn's text, the step indices and the budget only. Sometimes fewer than k steps (the prompt says "at most")."""
    rng = random.Random(hashlib.sha256(first_turn.encode()).hexdigest())
    n = k if k == 1 or rng.random() < 0.7 else rng.randint(1, k)
    picked = sorted(rng.sample(steps, n))
    labels = list(LABELS)
    out = [(i, lab, LABELS[lab]) for i, lab in ((i, rng.choice(labels)) for i in picked)]
    return rng.choice(["A", "B", "C"]), out


def scripted_answer(rec, ratio=0.3):
    """What select.py must write for `rec` when the server answered it well: (critical_steps, {index: category})."""
    steps = [i for i, t in enumerate(rec["conversations"]) if t["from"] == "gpt" and t.get("loss") is True]
    _, picks = scripted_choice(rec["conversations"][0]["value"], steps, budget_of(len(steps), ratio))
    return [i for i, _, _ in picks], {i: c for i, _, c in picks}


def read_prompt(text):
    """(first turn text, selectable steps, budget) from select.py's prompt; None if it does not look like one."""
    first = re.search(r"conversation\[0\] \(human\): (.*?)\nconversation\[1\] \(gpt\): ", text, re.S)
    steps = re.search(r"Only the gpt turns conversation\[([\d, ]+)\] are steps", text)
    k = re.search(r"A maximum of (\d+) steps? may be chosen", text)
    if not (first and steps and k):
        return None
    return first.group(1), [int(s) for s in steps.group(1).split(",")], int(k.group(1))


def render_text(style, picks, extra=()):
    """The paper's answer format (Appendix D.1) in three styles a real model produces."""
    idx = [i for i, _, _ in picks] + list(extra)
    plan = "First find the target, then act on it, and check the result after each action."
    if style == "A":
        lines = [f"1. **The high-level plan is:** {plan}",
                 f"2. **The critical steps are:** conversation[{', '.join(map(str, idx))}]", "3. **Reason:**"]
        lines += [f"- conversation[{i}] ({lab}): this step moves the task forward." for i, lab, _ in picks]
    elif style == "B":
        lines = [f"1. The high-level plan is: {plan}",
                 "2. The critical steps are: " + ", ".join(f"conversation[{i}]" for i in idx),
                 "3. Reason: " + " ".join(f"conversation[{i}] is a {lab} step, after which the agent "
                                          f"knows what to do." for i, lab, _ in picks)]
    else:  # markdown headers, one index per line, reasons that cite other (non-chosen) turns
        lines = ["### The high-level plan is", plan, "", "### The critical steps are"]
        lines += [f"conversation[{i}]" for i in idx]
        lines += ["", "### Reason"]
        lines += [f"**conversation[{i}]** - Category: **{lab}**. It uses what conversation[0] asked for."
                  for i, lab, _ in picks]
    return "\n".join(lines)


def render_json(picks, extra=()):
    items = [{"index": i, "category": c, "reason": "this step moves the task forward"} for i, _, c in picks]
    items += [{"index": i, "category": "Critical Action", "reason": "extra"} for i in extra]
    return json.dumps({"plan": "Find the target, then act on it.", "critical_steps": items})


# ----------------------------------------------------------------------------- the HTTP server

class OracleServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 drops connections when 16+ clients connect at once

    def __init__(self, addr, latency=0.0, faults=(), fault_every=1, slow=3.0):
        super().__init__(addr, Handler)
        self.latency, self.faults, self.fault_every, self.slow = latency, list(faults), fault_every, slow
        self.per_item = {}   # first-turn text -> list of faults for this item's attempts (overrides the default)
        self.attempts = {}   # first-turn text -> requests seen
        self.log = []        # (first-turn text, attempt, fault or "ok", json mode asked)
        self.first_arrival, self.answers = None, []  # first request's arrival, every 200 answer's time (GET /stats)
        self.lock = threading.Lock()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):  # a client that went away is fine
            super().handle_error(request, client_address)

    def fault_for(self, key, attempt):
        faults = self.per_item.get(key)
        if faults is None:
            selected = int(hashlib.sha256(key.encode()).hexdigest(), 16) % self.fault_every == 0
            faults = self.faults if selected else []
        return faults[attempt] if attempt < len(faults) else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client reuses its connections
    disable_nagle_algorithm = True  # else Nagle + the client's delayed ACK add ~40 ms to every answer

    def log_message(self, *args):
        pass

    def _send(self, status, body, headers=(), data=None, content_type="application/json"):
        data = json.dumps(body).encode() if data is None else data
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout); nothing to do

    def _error(self, status, message, kind, headers=()):
        self._send(status, {"error": {"message": message, "type": kind, "code": None}}, headers)

    def do_GET(self):
        srv = self.server
        if self.path.rstrip("/").endswith("/stats"):
            return self._send(200, {"requests": len(srv.log), "first_arrival": srv.first_arrival,
                                    "answers": sorted(srv.answers)})
        if self.path.rstrip("/").endswith("/models"):
            return self._send(200, {"object": "list", "data": [{"id": "oracle-test", "object": "model"}]})
        self._error(404, f"no route {self.path}", "not_found")

    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._error(404, f"no route {self.path}", "not_found")
        text = "\n".join(m["content"] for m in body.get("messages", []) if isinstance(m.get("content"), str))
        parsed = read_prompt(text)
        if parsed is None:
            return self._error(400, "the test server only answers select.py's prompt", "invalid_request_error")
        first, steps, k = parsed
        fmt = body.get("response_format") or {}
        json_mode = fmt.get("type") in ("json_schema", "json_object") and fmt.get("type")
        schema = (fmt.get("json_schema") or {}).get("schema") if json_mode == "json_schema" else fmt.get("schema")
        if json_mode:
            index = ((schema or {}).get("properties", {}).get("critical_steps") or {}).get("items", {})
            if index.get("properties", {}).get("index", {}).get("enum") != steps:
                return self._error(400, f"response_format {fmt.get('type')} without a schema whose indices are "
                                        f"the steps", "invalid_request_error")
        with srv.lock:
            srv.first_arrival = srv.first_arrival or time.time()
            attempt = srv.attempts.get(first, 0)
            srv.attempts[first] = attempt + 1
            fault = srv.fault_for(first, attempt)
            srv.log.append((first, attempt, fault or "ok", json_mode))
        time.sleep(srv.latency)
        if fault in ("429", "500", "503"):
            msg = {"429": "Rate limit reached for requests", "500": "The server had an error", "503": "Overloaded"}
            return self._error(int(fault), msg[fault], "rate_limit_error" if fault == "429" else "server_error",
                               [("retry-after-ms", "20")] if fault == "429" else [])
        if fault == "echo_key":
            return self._error(400, f"Bad request from {self.headers.get('Authorization')}", "invalid_request_error")
        if fault == "401":
            key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            return self._error(401, f"Incorrect API key provided: {key}.", "invalid_request_error")
        if fault == "slow":
            time.sleep(srv.slow)
        style, picks = scripted_choice(first, steps, k)
        extra = ()
        if fault == "out_of_range":
            human = next(i for i in range(2, max(steps) + 1) if i not in steps)
            extra = [999, picks[0][0], 0, 1, human] + [s for s in steps if s not in {i for i, _, _ in picks}]
        if fault == "garbage":
            content = "I am not sure which steps matter here. ¯\\_(ツ)_/¯"
        elif fault == "badjson":
            content = '{"plan": "unterminated'
        elif fault == "none_valid":
            content = (render_json([(999, "", "Critical Action"), (0, "", "Critical Action")]) if json_mode else
                       "1. The high-level plan is: go.\n2. The critical steps are: conversation[0, 999]\n3. Reason: x")
        elif json_mode:
            content = render_json(picks, extra)
        else:
            content = render_text(style, picks, extra)
        srv.answers.append(time.time())
        if fault == "html":
            return self._send(200, None, data=b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                              content_type="text/html")
        reply = {
            "id": f"chatcmpl-{attempt}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "oracle-test"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": len(text) // 4, "completion_tokens": len(content) // 4,
                      "total_tokens": len(text) // 4 + len(content) // 4}}
        message = reply["choices"][0]["message"]
        if fault == "parts":
            cut = len(content) // 2
            message["content"] = [{"type": "text", "text": content[:cut]}, {"type": "text", "text": content[cut:]}]
        elif fault == "bad_content":
            message["content"] = [3, 5]
        elif fault == "no_choices":
            reply["choices"] = []
        elif fault == "surrogate":
            message["content"] = content + "\ud800"  # json.dumps writes it as the escape \ud800
        data = json.dumps(reply).encode()
        self._send(200, None, data=data[:len(data) // 2] if fault == "truncated" else data)


def start(latency=0.0, faults=(), fault_every=1, slow=3.0, port=0):
    """Start a server in a daemon thread (for tests); returns it (srv.url, srv.log, srv.per_item, srv.shutdown())."""
    srv = OracleServer(("127.0.0.1", port), latency, faults, fault_every, slow)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=8011, help="port on 127.0.0.1 (0: any free port, printed)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds every request waits before its answer")
    p.add_argument("--faults", default="", help="comma-separated faults for each item's first attempts (see top)")
    p.add_argument("--fault-every", type=int, default=1, help="apply --faults to about 1 in N items only")
    p.add_argument("--slow", type=float, default=3.0, help="seconds a 'slow' reply waits")
    a = p.parse_args()
    srv = OracleServer(("127.0.0.1", a.port), a.latency, [f for f in a.faults.split(",") if f], a.fault_every, a.slow)
    print(f"oracle test server on {srv.url} (latency {a.latency}s, faults {a.faults or 'none'})", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
