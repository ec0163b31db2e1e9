"""A stub OpenAI-compatible chat server that plays a built-in environment's scripted expert, for the tests and
bench/bench_evaluate.py. Standard library only.

It is stateless: for each request it finds a task (among --tasks) whose replay of the request's assistant turns
reproduces every observation of the conversation, and answers that env's expert_turn(). So the `openai` policy
driven by this server must reach exactly the expert's score. Optional faults:
    --latency S        sleep S seconds before each answer (the benchmark's fixed 100 ms model)
    --garbage-every N  every N-th answer is malformed text with no "Action:" (counted by agent.py)

    python tests/expert_server.py --env maze --tasks 0:25 --port 8012 --latency 0.1
"""
import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script: the project root
from envs import make_env  # noqa: E402
from envs.serve import send_json  # noqa: E402


def first_observations(env_name, task_ids):
    env = make_env(env_name)
    try:
        return {t: env.reset(t) for t in task_ids}
    finally:
        env.close()


def expert_answer(env_name, task_ids, messages, first=None):
    """The expert's next turn for the conversation in `messages` (chat roles), or None if no task matches.
    `first` ({task id: first observation}, optional) skips the tasks that cannot match without a reset."""
    obs = [m["content"] for m in messages if m["role"] == "user"]
    turns = [m["content"] for m in messages if m["role"] == "assistant"][1:]  # [0] is the ack
    env = make_env(env_name)
    try:
        for t in task_ids:
            if first is not None and first[t] != obs[1]:
                continue
            if env.reset(t) != obs[1]:
                continue
            ok = True
            for k, text in enumerate(turns):
                o, _, _ = env.step(text)
                if k + 2 >= len(obs) or o != obs[k + 2]:
                    ok = False
                    break
            if ok:
                return env.expert_turn()
        return None
    finally:
        env.close()


class StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, env_name, task_ids, address=("127.0.0.1", 0), latency=0.0, garbage_every=0):
        self.env_name, self.task_ids, self.latency, self.garbage_every = env_name, list(task_ids), latency, garbage_every
        self.count, self.lock = 0, threading.Lock()
        self.first = first_observations(env_name, self.task_ids)
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real model servers do
    disable_nagle_algorithm = True  # one small write per answer: no 40 ms Nagle + delayed-ACK stall
    def do_POST(self):
        srv = self.server
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return send_json(self, 404, {"error": {"message": "not found"}})
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        with srv.lock:
            srv.count += 1
            n = srv.count
        if srv.latency:
            time.sleep(srv.latency)
        if srv.garbage_every and n % srv.garbage_every == 0:
            text = "Hmm, I am not sure what to do here."
        else:
            text = expert_answer(srv.env_name, srv.task_ids, body["messages"], srv.first)
            if text is None:
                return send_json(self, 400, {"error": {"message": "no task matches this conversation"}})
        send_json(self, 200, {"id": f"stub-{n}", "object": "chat.completion", "created": int(time.time()),
                              "model": body.get("model", "stub"),
                              "choices": [{"index": 0, "finish_reason": "stop",
                                           "message": {"role": "assistant", "content": text}}],
                              "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})

    def log_message(self, *args):
        pass


def start(env_name, task_ids, latency=0.0, garbage_every=0):
    """Start in a background thread; returns (server, base_url ending in /v1)."""
    srv = StubServer(env_name, task_ids, latency=latency, garbage_every=garbage_every)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/v1"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", required=True, help="built-in environment whose expert answers")
    ap.add_argument("--tasks", default="0:25", help="task ids A:B the conversations come from")
    ap.add_argument("--port", type=int, default=8012, help="port")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each answer")
    ap.add_argument("--garbage-every", type=int, default=0, help="every N-th answer is malformed (0: never)")
    a = ap.parse_args()
    lo, hi = (int(x) for x in a.tasks.split(":"))
    srv = StubServer(a.env, range(lo, hi), ("127.0.0.1", a.port), a.latency, a.garbage_every)
    print(f"expert stub for {a.env} at http://127.0.0.1:{srv.server_address[1]}/v1", flush=True)
    srv.serve_forever()
