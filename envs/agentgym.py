"""HTTP client for AgentGym's environment servers (WooooDyy/AgentGym agentenv-*), one class for all of them.

    env = HTTPEnv("webshop", "http://127.0.0.1:36001")      # what `make_env(name, server=URL)` returns
    obs = env.reset(3); obs, reward, done = env.step("Thought: ...\\nAction: search[red shoes]")
    env.close()                                              # or: with HTTPEnv(...) as env: ...

What goes over the wire is what AgentGym's clients at its first commit (f434743) send; the texts and the action
parsing are envs/protocol.py. The servers differ in routes, id field, bodies and answer keys:

    env           create body             id key    reset body                 step answer read
    babyai        -                       id        data_idx                   observation, score
    sciworld      -                       id        data_idx                   observation, score
    maze          -   (/maze/...)         id        game                       observation, reward
    wordle        -   (/wordle/...)       id        seed                       observation, reward
    textcraft     minecraft_dir, ...      id        data_idx                   observation, reward
    alfworld      -                       id        game, world_type "Text"    observation, reward
    webshop       -                       env_idx   session_id                 state, reward
    weather, movie, todo, academia, sheet
                  {"id": 0}               env_idx   id                         observation, reward
    pddl (ours, envs.serve)               id        data_idx                   observation, reward

The server URL is the one AgentGym's client gets as env_server_base, e.g. http://host:port for babyai; for the
LMRL-Gym server (maze and wordle share one) the /maze or /wordle suffix is added when missing.

Transport: one pooled keep-alive httpx (httpx2) client for the whole process (thread-safe), so an episode reuses one
connection instead of opening one per request. Every server-side env this module creates is closed: close()
posts /close (babyai, sciworld and textcraft servers have it; AgentGym's lmrlgym, alfworld, webshop and tool
servers have no such route, so a 404 there means there is nothing to free, and that URL is not asked again);
an HTTPEnv whose construction fails after /create closes itself; and the envs still open when the interpreter
exits (Ctrl-C, an exception in the caller) are closed by an atexit hook. close() never raises.

Errors: an unreachable server raises ConnectionError naming the URL (connect and read timeouts, no hang); an
HTTP error status or an {"error": ...} answer to /create or /reset raises ServerError (a ConnectionError) naming
the URL and the server's message. An {"error": ...} answer to /step ends the episode with reward 0 and the
message as the observation (the 2024 clients would stop the whole run with a KeyError). There is no expert
over HTTP.
"""
import atexit
import threading
import time

from envs import protocol
from envs.base import FACTS, Env

TOOL_ENVS = protocol.TOOL_ENVS


# ---- the facts of the envs only an AgentGym server plays (the built-ins declare theirs on their own classes).
# Scores as in AgentGym and the paper's Table 1: success rates, but Sheet's mean reward; rounds: AgentGym's.
class AgentGymEnv(Env):
    builtin = False


class AlfWorldEnv(AgentGymEnv):
    name, split, column, max_rounds = "alfworld", "held-in", "Alfworld", 30


class WebShopEnv(AgentGymEnv):
    name, split, max_rounds, ack = "webshop", "held-in", 10, protocol.ACK["webshop"]


class ToolEnv(AgentGymEnv):
    """The tool envs (weather, movie, todo, academia, sheet): their 2024 clients post the model's whole turn and
    the server parses it."""
    ack = protocol.ACK["weather"]

    @staticmethod
    def parse_action(text):
        return text


class WeatherEnv(ToolEnv):
    name, split, max_rounds = "weather", "held-in", 10


class MovieEnv(ToolEnv):
    name, split, max_rounds = "movie", "held-in", 12


class TodoEnv(ToolEnv):
    name, split, max_rounds = "todo", "held-in", 15


class AcademiaEnv(ToolEnv):
    name, split, column, max_rounds = "academia", "held-out", "Academic", 12


class SheetEnv(ToolEnv):
    name, split, max_rounds, score = "sheet", "held-out", 15, "mean"  # mean reward x100


class ServerError(ConnectionError):
    """The server answered, but with an HTTP error status (`status`) or an {"error": ...} it cannot go on from."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


_httpx, _client, _client_lock, _open_lock = None, None, threading.Lock(), threading.Lock()
_open_envs = set()              # HTTPEnvs whose server-side env is still open (held until closed; closed at exit)
_no_close_route = set()         # base URLs that answered /close with 404/405


def httpx():
    """The HTTP client module, imported on first use so that reading an env's facts costs no HTTP stack: httpx2
    (what openai >= 3 depends on, httpx's successor, same API), else httpx."""
    global _httpx
    if _httpx is None:
        try:
            import httpx2 as _httpx
        except ImportError:
            import httpx as _httpx
    return _httpx


def http_client():
    """The process's pooled keep-alive HTTP client (created on first use)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx().Client(limits=httpx().Limits(max_connections=None, max_keepalive_connections=256))
        return _client


@atexit.register
def close_all():
    """Close every server-side env still open (called at exit, e.g. after Ctrl-C)."""
    for env in list(_open_envs):
        env.close()


class HTTPEnv:
    """One AgentGym server-side environment instance, with the interface and the facts of its env's class
    (envs/base.py; no expert)."""

    def __init__(self, name, url, instruction=None, timeout=60.0):
        from envs import MAX_ROUNDS, env_class
        if name not in MAX_ROUNDS:
            raise ValueError(f"unknown AgentGym environment {name!r}; known: {', '.join(MAX_ROUNDS)}")
        facts = env_class(name)  # the env's own facts (round limit, ack, action parsing), whoever serves it
        for fact in FACTS:
            setattr(self, fact, getattr(facts, fact))
        self.parse_action, self.success, self.builtin, self.timeout = facts.parse_action, facts.success, False, timeout
        url = url.rstrip("/")
        if name in ("maze", "wordle") and not url.endswith("/" + name):
            url += "/" + name
        self.url = url
        self._instruction = instruction or protocol.INSTRUCTION[name]
        self.id_key = "env_idx" if name == "webshop" or name in TOOL_ENVS else "id"
        self.env_id = None
        if name == "textcraft":
            body = {"minecraft_dir": "agentenv_textcraft/", "commands": None, "goal": None}
        elif name in TOOL_ENVS:
            body = {"id": 0}
        else:
            body = None
        answer = self.request("POST", "create", body)
        if isinstance(answer, dict) and "error" in answer:
            raise ServerError(f"the {name} server at {self.url} cannot create an environment: {answer['error']}")
        self.env_id = answer["id"] if isinstance(answer, dict) else answer
        with _open_lock:
            _open_envs.add(self)
        try:
            # the 2024 wordle client reads the vocabulary once, right after /create
            self.vocab = self.get("filtered_vocab") if name == "wordle" else None
        except BaseException:  # also KeyboardInterrupt: never leave the env just created behind
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- transport
    def request(self, method, path, body=None, query=None, timeout=None):
        url = f"{self.url}/{path}"
        for attempt in range(5):
            try:
                resp = http_client().request(method, url, json=body, params=query, timeout=timeout or self.timeout)
            except httpx().HTTPError as e:
                raise ConnectionError(f"cannot reach the AgentGym {self.name} server at {url}: "
                                      f"{type(e).__name__}: {e}") from None
            # the webshop client retries a busy server (503) up to 5 times
            if not (resp.status_code == 503 and self.name == "webshop" and attempt < 4):
                break
            time.sleep(0.1)
        if resp.status_code != 200:
            raise ServerError(f"AgentGym {self.name} server {url} answered HTTP {resp.status_code}: "
                              f"{resp.text[:300]!r}", status=resp.status_code)
        return resp.json() if resp.content else None

    def post(self, path, body, timeout=None):
        return self.request("POST", path, {**body, self.id_key: self.env_id}, timeout=timeout)

    def get(self, path):
        return self.request("GET", path, query={self.id_key: self.env_id})

    # ---- the env interface
    def task_ids(self):
        return None  # the server knows; evaluate.py asks for --tasks A:B or --task-file

    def instruction(self):
        return self._instruction

    def reset(self, task_id):
        name, t = self.name, int(task_id)
        if name in ("babyai", "sciworld", "textcraft") or name not in protocol.ENVS:  # own envs: as envs.serve
            body = {"data_idx": t}
        elif name == "maze":
            body = {"game": t}
        elif name == "alfworld":
            body = {"game": t, "world_type": "Text"}
        elif name == "wordle":
            body = {"seed": t}
        elif name == "webshop":
            body = {"session_id": t}
        else:  # tool envs
            body = {"id": t}
        r = self.post("reset", body)
        if isinstance(r, dict) and "error" in r:
            raise ServerError(f"the {name} server at {self.url} cannot reset task {t}: {r['error']}")
        if name not in protocol.ENVS:  # our own env (pddl), served by envs.serve as babyai's server answers
            return r["observation"]
        observation = self.get("observation") if name == "webshop" or name in TOOL_ENVS else None
        return protocol.first_observation(name, r, observation=observation, vocab=self.vocab)

    def step(self, text):
        r = self.post("step", {"action": self.parse_action(text)})
        if "error" in r:
            return str(r["error"]), 0.0, True
        obs = r["state"] if self.name == "webshop" else r["observation"]
        reward = r["score"] if self.name in ("babyai", "sciworld") else r["reward"]
        return obs, float(reward), bool(r["done"])

    def expert_turn(self):
        raise NotImplementedError(f"no expert over HTTP ({self.name} at {self.url}); use a built-in environment")

    def close(self):
        """Free the server-side env (once; never raises: it runs in finally blocks and at exit)."""
        with _open_lock:
            if self not in _open_envs:
                return
            _open_envs.discard(self)
        if self.url in _no_close_route:
            return
        try:
            self.post("close", {}, timeout=min(self.timeout, 10.0))  # a hung server must not hang the exit
        except ServerError as e:
            if e.status in (404, 405):
                _no_close_route.add(self.url)  # this server keeps its envs; nothing to free
        except Exception:  # a dead server has nothing left to free
            pass
