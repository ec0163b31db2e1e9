"""envs/protocol.py is AgentGym's client protocol at f434743 (texts pinned by hash, parsing on a table of tricky
turns), and the HTTP client closes every server-side env it creates: after episodes, failed episodes, resets the
server refuses, a failed construction, Ctrl-C, and at exit; it keeps one connection alive per episode."""
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent import run_episode, run_episodes
from envs import agentgym, env_class, make_env, protocol
from envs.serve import EnvServer
from tests.conftest import needs

# SHA-256 (first 16 hex digits) of each env's instruction, the maze prompt and the wordle prompt, as the f434743
# clients hold them: conversation_start[0]["value"] of agentenv/agentenv/envs/<env>.py, and the stripped
# MazeEnvClient._fully_first_observation / WordleEnvClient.first_observation of lmrlgym.py
# (`git -C AgentGym show f434743:agentenv/agentenv/envs/babyai.py`, ...).
PINNED = {
    "webshop": "5dd9cb5a21953f45", "alfworld": "ac0d1c2f1a9c9e3e", "textcraft": "217e679c74a4e708",
    "babyai": "f03929db839c07be", "sciworld": "60cb64251b241497", "maze": "a5f0aea5bd65c603",
    "wordle": "72cb8a40f92de19b", "weather": "e78ef329ddba63c5", "movie": "b85d5f8ad41a0452",
    "todo": "40b48f7bc9432c06", "academia": "a6ea64cc7b34c3cc", "sheet": "557ba2cf37ac88de",
}
PINNED_MAZE_PROMPT, PINNED_WORDLE_PROMPT = "da663c708260bf6a", "6e797b2ad5947f37"


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_texts_are_the_2024_clients():
    assert protocol.COMMIT == "f434743" and set(protocol.ENVS) == set(PINNED)
    assert {env: sha(protocol.INSTRUCTION[env]) for env in protocol.ENVS} == PINNED
    assert sha(protocol.MAZE_PROMPT) == PINNED_MAZE_PROMPT and sha(protocol.WORDLE_PROMPT) == PINNED_WORDLE_PROMPT
    long = "OK. I'll follow your instructions and try my best to solve the task."
    assert {e: protocol.ACK[e] for e in protocol.ENVS} == {
        env: "Ok." if env in ("webshop",) + protocol.TOOL_ENVS else long for env in protocol.ENVS}
    # spot checks that a reader can follow without the hashes
    assert protocol.INSTRUCTION["maze"] == "You are an expert maze solver."
    assert protocol.INSTRUCTION["textcraft"].endswith("Your response should use the following format:\n\n"
                                                      "Thought:\n ... \n\nAction:\n ... ")
    assert "Thought:\nI know that the first letter is \"f\"" in protocol.WORDLE_PROMPT
    assert "be \"f r o w n\", since" in protocol.WORDLE_PROMPT
    assert protocol.MAZE_PROMPT.endswith("Thought:\n<Your Thought>\n\nAction:\n<Your Action>\n\nNow let's start a new "
                                         "game. Return your action and your thought in the format above strictly. Now, "
                                         "make the optimal action given the current environment state:")
    assert "surround you. \n\nWhen you move right" in protocol.MAZE_PROMPT  # trailing spaces kept
    assert "'temperature_2m_max': '°C'" in protocol.INSTRUCTION["weather"]


def escaped(text):
    return "\\n" in text or '\\"' in text


def test_prompts_hold_no_escaped_newline_or_quote():
    texts = list(protocol.INSTRUCTION.values()) + [protocol.MAZE_PROMPT, protocol.WORDLE_PROMPT]
    assert not [t[:60] for t in texts if escaped(t)]


@pytest.mark.parametrize("name,tasks", [("maze", [0, 1000]), ("wordle", [0]), ("babyai", [0, 3, 22]),
                                        ("sciworld", [0])])
def test_builtin_first_observations_hold_no_escaped_newline_or_quote(name, tasks):
    needs(name)
    env = make_env(name)  # with its packages here, a construction error is a failure
    try:
        assert env.instruction() == protocol.INSTRUCTION[name] and env.ack == protocol.ACK[name]
        for t in tasks:
            first = env.reset(t)
            assert not escaped(first), (name, t)
    finally:
        env.close()


# Tricky assistant turns and what AgentGym's 2024 clients send for them.
#   first: BabyAIEnvClient.step, SciworldEnvClient.step, MazeEnvClient.step, WordleEnvClient.step,
#          WebshopEnvClient.step, AlfWorldEnvClient.step (the same code in each): cut 5 characters after a
#          trailing "</s>", split at "Action:", take part [1] (the text after the FIRST one) or, without one, the
#          whole text; strip.
#   craft: TextCraftEnvClient.step: .split("Instruction:")[0].split("Action:")[-1] (after the LAST one), drop
#          every character but [A-Za-z0-9, ], collapse whitespace.
#   tool:  WeatherEnvClient.step (and Movie/Todo/Academia/Sheet): the turn unchanged.
TURNS = [
    # turn                                                  first                       craft
    ("Thought:\nGo up.\n\nAction:\nmove up",                "move up",                  "move up"),
    ("Action: turn left\nAction: turn right",               "turn left",                "turn right"),
    ("Thought: a\nAction:\nget 1 stick\n\nAction:\nlook",   "get 1 stick",              "look"),
    ("I will go to the red ball",                           "I will go to the red ball", "I will go to the red ball"),
    ("Action: move up</s>",                                 "move u",                   "move ups"),
    ("Action:\nget 1 stick</s>",                            "get 1 stic",               "get 1 sticks"),
    ("Action:\nSOLAR",                                      "SOLAR",                    "SOLAR"),
    ("Action: s o l a r",                                   "s o l a r",                "s o l a r"),
    ("Action: up",                                          "up",                       "up"),
    ("Action: look",                                        "look",                     "look"),
    ("Action: craft 1 stick\nInstruction: x Action: y",     "craft 1 stick\nInstruction: x", "craft 1 stick"),
    ("Action: get 2 oak_planks.",                           "get 2 oak_planks.",        "get 2 oakplanks"),
    ("Thought:\nI think ... \n\nAction: \nclick[Buy Now]",  "click[Buy Now]",           "clickBuy Now"),
    ("Action:",                                             "",                         ""),
    ("",                                                    "",                         ""),
    ("   ",                                                 "",                         ""),
]


@pytest.mark.parametrize("turn,first,craft", TURNS)
def test_parse_action_follows_the_2024_clients(turn, first, craft):
    for env in protocol.ENVS:
        want = craft if env == "textcraft" else turn if env in protocol.TOOL_ENVS else first
        assert protocol.parse_action(env, turn) == want, env
        assert env_class(env).parse_action(turn) == want, env  # what the env's class (and HTTPEnv) sends
    assert env_class("pddl").parse_action(turn) == first  # ours, with the 2024 clients' rule


def test_parse_action_knows_only_agentgym_envs():
    """Our own envs parse on their classes: the table here is AgentGym's twelve clients and no more."""
    with pytest.raises(ValueError, match="unknown AgentGym environment 'pddl'"):
        protocol.parse_action("pddl", "Action: pick up a")


def test_builtins_take_no_liberties():
    """What the parser hands on is what the env acts on: maze `up` and wordle `SOLAR` are wasted rounds."""
    from envs.maze import MazeEnv
    from envs.wordle import WordleEnv
    maze = MazeEnv()
    before = maze.reset(16)  # 5, 6: free cells left and right
    for turn in ("Action: left", "Action: LEFT", "Action: Move left", "Action: move left</s>"):
        obs, reward, done = maze.step(turn)
        assert "position 5, 6." in obs and obs in before and not done
    assert "position 5, 5." in maze.step("Action: move left")[0]
    wordle = WordleEnv()
    wordle.reset(0)
    assert wordle.step("Action: SOLAR")[0] == "invalid word"
    assert wordle.step("Action: S O L A R")[0] == "invalid word"
    assert wordle.step("Action: s o l a r")[0] != "invalid word"


# ---------------------------------------------------------------------------- the HTTP client closes what it made
class CountingServer(EnvServer):
    """envs.serve's server, counting TCP connections (one finish_request per connection)."""

    def __init__(self, name):
        self.connections = 0
        super().__init__(name, ("127.0.0.1", 0))

    def finish_request(self, request, client_address):
        with self.lock:
            self.connections += 1
        super().finish_request(request, client_address)


@pytest.fixture
def maze_server():
    server = CountingServer("maze")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def expert_turns(task):
    from agent import ExpertPolicy
    res = run_episode(make_env("maze"), ExpertPolicy(), task)
    return [t["value"] for t in res["conversations"][3::2]]


def replay(turns):
    turns = list(turns)
    return lambda convs, envs, temperature=None: [turns.pop(0) for _ in convs]


def test_episode_closes_and_keeps_one_connection(maze_server):
    server, url = maze_server
    turns = expert_turns(0)
    with make_env("maze", server=url) as env:
        res = run_episode(env, replay(turns), 0)
    assert res["success"] == 1 and len(turns) >= 5
    assert server.next_id == 1 and not server.envs       # one /create, one /close
    assert server.connections == 1                       # create, reset, every step and close on one connection


def test_failed_episodes_and_refused_resets_close_their_envs(maze_server):
    server, url = maze_server

    def broken(convs, envs, temperature=None):
        raise RuntimeError("the model server went away")

    with pytest.raises(RuntimeError, match="went away"):
        list(run_episodes(lambda: make_env("maze", server=url), broken, [{"task_id": t} for t in range(4)],
                          concurrency=2))
    assert server.next_id == 2 and not server.envs
    with pytest.raises(agentgym.ServerError, match="cannot reset task 999"):  # not one of AgentGym's games
        with make_env("maze", server=url) as env:
            env.reset(999)
    assert server.next_id == 3 and not server.envs

    def interrupted(convs, envs, temperature=None):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(run_episodes(lambda: make_env("maze", server=url), interrupted, [{"task_id": 0}]))
    assert server.next_id == 4 and not server.envs

    # a reset the server refuses inside run_episodes: both slots' envs are closed, the refused one included
    with pytest.raises(agentgym.ServerError, match="cannot reset task 999"):
        list(run_episodes(lambda: make_env("maze", server=url), broken, [{"task_id": 999}, {"task_id": 0}],
                          concurrency=2))
    assert server.next_id == 6 and not server.envs


def test_envs_left_open_are_closed_at_exit(maze_server):
    server, url = maze_server
    envs = [make_env("maze", server=url) for _ in range(3)]
    envs[0].reset(3)
    envs[1].close()
    assert len(server.envs) == 2
    agentgym.close_all()  # what the atexit hook runs (after Ctrl-C, or a caller that never closed)
    assert server.next_id == 3 and not server.envs
    envs[0].close()  # a second close is a no-op
    assert server.next_id == 3


def test_failed_construction_and_step_errors():
    """A server that answers /create but fails wordle's /filtered_vocab: the env just created is closed before
    the error surfaces. An {"error"} answer to /step ends the episode (reward 0) instead of raising."""
    calls = []

    class Stub(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, obj, code=200):
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
            calls.append(self.path)
            if self.path.endswith("/create"):
                return self._reply({"id": len([c for c in calls if c.endswith("/create")])})
            if self.path.endswith("/reset"):
                return self._reply({"observation": "start"})
            if self.path.endswith("/close"):
                return self._reply({"closed": body["id"]})
            return self._reply({"error": "The task with environment 2 has finished."})

        def do_GET(self):
            calls.append(self.path.split("?")[0])
            if self.server.vocab_fails:
                return self._reply({"detail": "boom"}, 500)
            self._reply(["solar", "panic"])

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    server.vocab_fails = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(agentgym.ServerError, match="answered HTTP 500"):
            make_env("wordle", server=url)
        assert calls == ["/wordle/create", "/wordle/filtered_vocab", "/wordle/close"]
        server.vocab_fails = False
        with make_env("wordle", server=url) as env:
            assert env.reset(4).startswith("Welcome to the game of Wordle.") and "\nsolar\npanic\n" in env.reset(4)
            assert env.step("Action: s o l a r") == ("The task with environment 2 has finished.", 0.0, True)
        assert calls[-1] == "/wordle/close" and calls.count("/wordle/create") == calls.count("/wordle/close") == 2
    finally:
        server.shutdown()
        server.server_close()
