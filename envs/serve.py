"""Serve a built-in environment with AgentGym's HTTP protocol, so AgentGym's own client (and envs.agentgym.HTTPEnv)
can use it like the real agentenv-* servers. Standard library only (http.server), one thread per request.

    python -m envs.serve --env babyai --port 36005  # then: evaluate.py --env babyai --env-server http://127.0.0.1:36005
    python -m envs.serve --env maze --port 36010    # LMRL-Gym routes: /maze/create, /maze/reset, ...

Routes and answers follow each AgentGym server:
    babyai    POST /create -> {"id"}; POST /reset {"id","data_idx"} -> {"observation","reward","score","done"};
              POST /step {"id","action"} -> {"observation","reward","score","done"}
    sciworld  as babyai, but /reset -> {"task_description","observation"} (the client joins them with "\\n")
    maze      POST /maze/create, /maze/reset {"id","game"} -> {"observation"} (without the prompt the client
              prepends), /maze/step -> {"observation","reward","done"}
    wordle    POST /wordle/create, /wordle/reset {"id","seed"} -> {"id","observation"}, GET /wordle/filtered_vocab,
              /wordle/step -> {"observation","reward","done"}
    all       GET / (hello), GET [/maze|/wordle]/observation?id=N, POST [/maze|/wordle]/close {"id"} (AgentGym's
              lmrlgym server has no /close; ours frees the env)
The action the client posts is what AgentGym's client extracted from the model's turn; the built-in envs parse
it again the same way (envs/protocol.py), which leaves an extracted action unchanged. Connections are kept
alive (HTTP/1.1), as uvicorn does for AgentGym's servers.
"""
import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from envs import BUILTIN, make_env, protocol


class EnvServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, env_name, address):
        self.env_name = env_name
        self.prefix = f"/{env_name}" if env_name in ("maze", "wordle") else ""
        self.envs, self.last_obs, self.lock, self.next_id = {}, {}, threading.Lock(), 0
        super().__init__(address, Handler)

    def handle_route(self, method, path, body, query):
        if method == "GET" and path in ("/", self.prefix or "/"):
            return f"This is environment {self.env_name} (ATLaS built-in, AgentGym protocol)."
        if not path.startswith(self.prefix):
            return None
        route = path[len(self.prefix):]
        name = self.env_name
        if method == "POST" and route == "/create":
            with self.lock:
                idx, self.next_id = self.next_id, self.next_id + 1
            self.envs[idx] = make_env(name)
            return {"id": idx}
        idx = body.get("id") if method == "POST" else int(query.get("id", ["-1"])[0])
        env = self.envs.get(idx)
        if env is None:
            return {"error": f"The id {idx} is not valid."}
        if method == "POST" and route == "/reset":
            task = body.get({"maze": "game", "wordle": "seed"}.get(name, "data_idx"))
            try:
                first = env.reset(int(task))
            except Exception as e:
                return {"error": str(e)}
            self.last_obs[idx] = first
            if name == "maze":  # the server's part of the first observation, without the client's prompt
                return {"observation": first[len(protocol.MAZE_PROMPT) + 1:]}
            if name == "wordle":
                return {"id": idx, "observation": "Let's start Wordle!"}
            if name == "sciworld":
                task_description, _, observation = first.partition("\n")
                return {"task_description": task_description, "observation": observation}
            return {"observation": first, "reward": 0.0, "score": 0.0, "done": False}
        if method == "POST" and route == "/step":
            obs, reward, done = env.step(str(body.get("action", "")))
            self.last_obs[idx] = obs
            out = {"observation": obs, "reward": reward, "done": done}
            if name in ("babyai", "sciworld"):  # the client reads the running score; "reward" is the round's
                out["score"], out["reward"] = reward, getattr(env, "reward", reward)
            return out
        if method == "GET" and route == "/observation":
            return self.last_obs.get(idx, "")
        if method == "GET" and route == "/filtered_vocab" and name == "wordle":
            from envs.wordle import VOCAB
            return list(VOCAB)
        if method == "POST" and route == "/close":
            self.envs.pop(idx).close()
            return {"closed": True}
        return None


def send_json(handler, code, obj):
    """Answer the request `handler` (a BaseHTTPRequestHandler) with `obj` as JSON and status `code`. The
    Content-Length lets a keep-alive client find the end of the answer; the test servers answer with it too."""
    data = json.dumps(obj).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client reuses its connection (every answer has Content-Length)
    disable_nagle_algorithm = True  # small JSON answers: do not wait for delayed ACKs
    def _serve(self, method):
        url = urlparse(self.path)
        body = {}
        if method == "POST":
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            try:
                body = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError:
                return send_json(self, 422, {"detail": "body is not JSON"})
            body = body if isinstance(body, dict) else {}
        try:
            out = self.server.handle_route(method, url.path.rstrip("/") or "/", body, parse_qs(url.query))
        except Exception as e:  # an env bug must not kill the server thread silently
            return send_json(self, 500, {"detail": f"{type(e).__name__}: {e}"})
        if out is None:
            return send_json(self, 404, {"detail": "Not Found"})
        send_json(self, 200, out)

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def log_message(self, *args):  # quiet: one line per request would drown the console
        pass


def start(env_name, host="127.0.0.1", port=0):
    """Start a server in a background thread; returns (server, base_url). server.shutdown() stops it."""
    if env_name not in BUILTIN:
        raise ValueError(f"unknown built-in environment {env_name!r}; built-in environments: {', '.join(BUILTIN)}")
    server = EnvServer(env_name, (host, port))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", required=True, choices=BUILTIN, help="built-in environment to serve")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 to serve other machines)")
    ap.add_argument("--port", type=int, default=8000, help="port to listen on")
    args = ap.parse_args()
    server = EnvServer(args.env, (args.host, args.port))
    print(f"serving {args.env} with the AgentGym protocol at http://{args.host}:{server.server_address[1]}"
          f"{server.prefix}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
