"""Built-in environments: the experts solve the test tasks, Maze and Wordle follow LMRL-Gym/AgentGym's rules and
text, the AgentGym HTTP protocol (envs.serve + envs.agentgym) gives the very same episodes as in-process, and bad
input fails loudly and fast. BabyAI/SciWorld specifics live in test_envs_babyai_sciworld.py."""
import os
import socket
import time

import pytest

from agent import ExpertPolicy, run_episode, run_episodes
from envs import env_class, make_env, success
from envs.maze import MazeEnv
from envs.wordle import VOCAB, WordleEnv
from tests.conftest import needs

# the four envs whose texts are AgentGym's servers' word for word (textcraft and pddl: test_envs_textcraft_pddl.py)
FOUR = ("babyai", "sciworld", "maze", "wordle")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_test_ids(name):
    path = os.path.join(ROOT, "data", f"{name}_test_ids.txt")
    return [int(x) for x in open(path) if x.strip()]


# SciWorld runs Java (~1.5 s an episode, one JVM per slot), so the CI checks every 8th of its test ids; the full set
# is measured with evaluate.py (data/README.md).
STRIDE = {"sciworld": 8, "babyai": 2}  # CI time: every 2nd of the 80 babyai test ids (all levels, one seed each)


@pytest.mark.parametrize("name", FOUR)
def test_expert_solves_test_tasks(name):
    needs(name)
    ids = load_test_ids(name)[::STRIDE.get(name, 1)]
    results = list(run_episodes(lambda: make_env(name), ExpertPolicy(), [{"task_id": i} for i in ids],
                                concurrency=2))
    assert len(results) == len(ids)
    rate = sum(r["success"] for r in results) / len(results)
    failed = sorted(r["task_id"] for r in results if not r["success"])
    assert rate >= 0.95, f"{name}: expert success {rate:.3f} < 0.95 on test ids; failed: {failed}"
    for r in results:
        assert r["format_errors"] == 0, r["task_id"]
        # a solved task ends because the env said done, never by running into the round limit (an env that
        # forgets `done` would still show its reward, and every episode would run to the limit)
        assert not r["success"] or r["end"] == "done", (r["task_id"], r["end"])


def test_train_and_test_ids_are_disjoint():
    from trajectory import read_records
    for name in FOUR:
        train = os.path.join(ROOT, "data", f"{name}_train.jsonl")
        assert os.path.exists(train), f"{train}: the bundled training data is missing"
        train_ids = {int(r["item_id"].rsplit("_", 1)[1]) for r in read_records(train)}
        assert not train_ids & set(load_test_ids(name)), name


def test_maze_reproduces_agentgym_prompt_example():
    """The prompt's own example (AgentGym's maze client) starts at 5, 6 = AgentGym game 16; replaying its actions
    must give exactly its environment lines, wall order and ending included."""
    from envs.maze import PROMPT
    example = PROMPT.split("```")[1].strip().splitlines()
    env_lines = [l[len("environment: "):] for l in example if l.startswith("environment: ")]
    actions = [l[len("action: "):] for l in example if l.startswith("action: ")]
    env = MazeEnv()
    first = env.reset(16)
    assert first == PROMPT + "\n" + env_lines[0]
    got = [env.step(f"Thought:\nx\n\nAction:\n{a}") for a in actions]
    # LMRL-Gym's MazeEnv answers the goal with "Success\n" (the prompt's example shows it without the newline)
    assert [o for o, _, _ in got] == env_lines[1:-1] + [env_lines[-1] + "\n"]
    assert [r for _, r, _ in got] == [0.0] * (len(actions) - 1) + [1.0]
    assert [d for _, _, d in got] == [False] * (len(actions) - 1) + [True]


def test_maze_invalid_action_keeps_position_and_never_raises():
    env = MazeEnv()
    env.reset(0)
    before = env.describe()
    # no leniency AgentGym lacks: "right", "Move right", "move right." are not actions (position 1, 1 has a free
    # cell to its right, so a move would show)
    for bad in ["", "Action:", "Thought: hmm", "Action: fly north", "Action: MOVE RIGHT", "Action: right",
                "Thought:\nright\n\nAction:\nright", "Action: move right.", "\x00" * 50]:
        obs, reward, done = env.step(bad)
        assert obs == before and reward == 0.0 and not done
    obs, _, _ = env.step("Thought:\nright\n\nAction:\nmove right")
    assert "position 1, 2" in obs


def test_maze_tasks_fit_agentgym_rounds():
    env = MazeEnv()
    for t in list(range(25)) + list(range(1000, 2000, 37)):
        r = run_episode(env, ExpertPolicy(), t)
        assert r["success"] and r["rounds"] <= 12, (t, r["rounds"])


def play(env, words):
    return [env.step(f"Thought:\nguess\n\nAction:\n{' '.join(w) if len(w) == 5 else w}") for w in words]


def test_wordle_rules():
    env = WordleEnv()
    prompt = env.reset(7)
    assert "\n".join(VOCAB) in prompt and len(VOCAB) == 40
    # the same seed gives the same game; feedback is 5 letters from {g, y, b}
    a = play(env, ["solar", "point"])
    env.reset(7)
    assert play(env, ["solar", "point"]) == a
    # LMRL-Gym's reformatted feedback line keeps its newline, as AgentGym's server sends it
    assert all(o.endswith("\n") and len(o.split()) == 5 and set(o.split()) <= set("gyb") for o, _, _ in a)
    # invalid guesses: out of vocabulary, wrong length, upper case -> "invalid word", each uses one of 6 tries
    env.reset(3)
    out = play(env, ["zzzzz", "abc", "SOLAR", "zzzzz", "zzzzz"])
    assert [o for o, _, _ in out] == ["invalid word"] * 5 and not any(d for _, _, d in out)
    obs, reward, done = play(env, ["qqqqq"])[0]
    assert obs == "invalid word" and reward == 0.0 and done
    # a bare "solar" (no spaces) is a valid guess: the server only removes spaces from what the client sends
    env.reset(3)
    assert env.step("Action: solar")[0] != "invalid word"


def test_wordle_win_gives_reward_one_and_feedback_is_consistent():
    env = WordleEnv()
    for seed in range(20):
        env.reset(seed)
        done, guesses = False, 0
        while not done:
            obs, reward, done = env.step(env.expert_turn())
            guesses += 1
        assert reward == 1.0 and obs == "g g g g g\n" and guesses <= 6
        # every candidate left is consistent with every (guess, feedback) seen
        assert len(env.candidates) == 1


def test_http_server_gives_identical_episodes():
    """Expert episodes in-process, then the same assistant turns through envs.serve + the AgentGym HTTP client:
    conversations (instruction, ack, every observation) and rewards must be identical, and every env the client
    created on the server is closed again."""
    from envs.serve import start

    class Replay:
        def __init__(self, turns):
            self.turns = list(turns)

        def __call__(self, convs, envs, temperature=None):
            return [self.turns.pop(0) for _ in convs]

    tasks = {"maze": [0, 16, 24, 1000, 1900], "wordle": [0, 5, 11], "babyai": [3, 7, 21, 22], "sciworld": [0]}
    for name in FOUR:
        try:
            needs(name)
        except pytest.skip.Exception:
            continue
        server, url = start(name)
        try:
            local = make_env(name)
            for t in tasks[name]:
                a = run_episode(local, ExpertPolicy(), t)
                turns = [x["value"] for x in a["conversations"][3::2]]
                with make_env(name, server=url) as remote:
                    b = run_episode(remote, Replay(turns), t)
                assert b["conversations"] == a["conversations"], (name, t)
                assert (b["reward"], b["success"], b["rounds"]) == (a["reward"], a["success"], a["rounds"]), (name, t)
            local.close()
            assert server.next_id == len(tasks[name]) and not server.envs  # created one each, all closed
        finally:
            server.shutdown()


def test_bad_input_fails_loudly_and_fast():
    with pytest.raises(ValueError, match="unknown built-in environment 'nope'"):
        make_env("nope")
    with pytest.raises(ValueError, match="needs --env-server"):
        make_env("webshop")
    with pytest.raises(ValueError, match="unknown environment .nope.; AgentGym environments"):
        make_env("nope", server="http://127.0.0.1:9")
    t0 = time.time()
    with pytest.raises(ConnectionError, match="cannot reach the AgentGym babyai server at http://127.0.0.1:9"):
        make_env("babyai", server="http://127.0.0.1:9")
    silent = socket.socket()  # accepts connections (backlog) but never answers: the timeout must fire
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        with pytest.raises(ConnectionError, match="cannot reach"):
            make_env("maze", server=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=1.0)
    finally:
        silent.close()
    assert time.time() - t0 < 10
    for bad in (25, 999, 2000):  # 0..24 are AgentGym's games, 1000..1999 our own training mazes
        with pytest.raises(ValueError, match="out of range"):
            MazeEnv().reset(bad)
    assert success("sciworld", 100) and not success("sciworld", 99.0) and success("maze", 1.0)


# The paper's Table 1 and AgentGym's settings, written out: (split, column, max rounds, score kind, scale to
# 0..100, lowest score, built-in) per env, in the report's column order.
FACTS = {
    "alfworld": ("held-in", "Alfworld", 30, "rate", 100, 0, False),
    "babyai": ("held-in", "Babyai", 20, "mean", 100, 0, True),
    "maze": ("held-in", "Maze", 15, "rate", 100, 0, True),
    "movie": ("held-in", "Movie", 12, "rate", 100, 0, False),
    "sciworld": ("held-in", "Sciworld", 30, "mean", 1, -100, True),
    "textcraft": ("held-in", "Textcraft", 20, "rate", 100, 0, True),
    "todo": ("held-in", "Todo", 15, "rate", 100, 0, False),
    "weather": ("held-in", "Weather", 10, "rate", 100, 0, False),
    "webshop": ("held-in", "Webshop", 10, "rate", 100, 0, False),
    "wordle": ("held-in", "Wordle", 8, "rate", 100, 0, True),
    "academia": ("held-out", "Academic", 12, "rate", 100, 0, False),
    "sheet": ("held-out", "Sheet", 15, "mean", 100, 0, False),
    "jericho": ("held-out", "Jericho", 30, "progress", 100, 0, True),
    "pddl": ("held-out", "PDDL", 30, "progress", 100, 0, True),
    # the offline stand-in on pddlgym's problem files: in no split, never the paper's PDDL column
    "pddlgym": (None, "PDDL (pddlgym)", 30, "progress", 100, 0, True),
}


def test_every_env_declares_the_papers_facts_on_its_class():
    import envs
    from envs.base import Env
    assert list(envs.REGISTRY) == envs.names() == list(FACTS)
    for name, want in FACTS.items():
        cls = envs.env_class(name)
        assert issubclass(cls, Env) and cls.name == name
        got = (cls.split, cls.column, cls.max_rounds, cls.score, cls.scale, cls.lowest, cls.builtin)
        assert got == want, name
        assert cls.ack == ("Ok." if name in ("webshop", "weather", "movie", "todo", "academia", "sheet")
                           else envs.ACK), name
    assert envs.names("held-in") == list(FACTS)[:10] and envs.names("held-out") == list(FACTS)[10:14]
    assert envs.BUILTIN == ("babyai", "maze", "sciworld", "textcraft", "wordle", "jericho", "pddl", "pddlgym")
    assert envs.MAX_ROUNDS == {"webshop": 10, "alfworld": 30, "textcraft": 20, "sciworld": 30, "wordle": 8,
                               "maze": 15, "babyai": 20, "pddlgym": 30, "weather": 10, "movie": 12, "todo": 15,
                               "academia": 12, "sheet": 15}
    # success rules: full reward, 100 on SciWorld's scale, any reward on BabyAI; a stand-in env gets the default
    assert [success("babyai", r) for r in (0.0, 0.01, 1.0)] == [False, True, True]
    assert [success("sciworld", r) for r in (-100, 99.9, 100)] == [False, False, True]
    assert [success(n, r) for n in ("webshop", "pddl", "a test's fake env") for r in (0.99, 1.0)] == [False, True] * 3
    with pytest.raises(ValueError, match="unknown environment 'nope'; known: alfworld, babyai, maze"):
        envs.env_class("nope")


def test_importing_envs_loads_no_simulator():
    """`import envs` and reading every env's facts load no simulator, planner or HTTP stack (those load when an
    env is made); a stage that only reads facts starts fast."""
    import subprocess
    import sys
    code = ("import sys, envs; a = set(sys.modules); [envs.env_class(n) for n in envs.names()]; envs.MAX_ROUNDS; "
            "b = set(sys.modules); heavy = ('minigrid', 'gymnasium', 'scienceworld', 'pddlgym', 'pyperplan', "
            "'minecraft_data', 'httpx', 'httpx2', 'torch'); "
            "print(sorted(m for m in a if m.startswith('envs.') or m.split('.')[0] == 'numpy'), "
            "sorted({m.split('.')[0] for m in b} & set(heavy)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['envs.protocol'] []"


def test_facts_are_checked_when_a_class_is_made():
    from envs.base import Env

    class Foo(Env):
        name = "foo_bar"

    class Bar(Foo):
        name = "bar"

    assert (Foo.column, Bar.column, Foo.split, Foo.score) == ("Foo_Bar", "Bar", None, "rate")
    with pytest.raises(TypeError, match="split 'held_in'"):
        type("Typo", (Env,), {"name": "typo", "split": "held_in"})
    with pytest.raises(TypeError, match="score 'success'"):
        type("Typo", (Env,), {"name": "typo", "score": "success"})
    with pytest.raises(TypeError, match="success: declare it @staticmethod"):
        type("Typo", (Env,), {"name": "typo", "success": lambda self, reward: reward > 0})


def test_builtins_act_on_their_own_parse_action():
    """A subclass that changes parse_action changes what the env does: nothing parses a turn behind its back."""
    class Right(MazeEnv):
        parse_action = staticmethod(lambda text: "move right")

    class Solar(WordleEnv):
        parse_action = staticmethod(lambda text: "solar")

    env = Right()
    env.reset(0)  # 1, 1: a free cell to the right
    assert "position 1, 2" in env.step("no action at all")[0]
    env = Solar()
    env.reset(3)
    assert env.step("Action: qqqqq")[0] != "invalid word"


def test_http_client_speaks_webshop_and_tool_env_protocols():
    """Webshop and the tool envs use env_idx, a bare-int /create answer and GET /observation; webshop answers
    "state" and gets the text after the first "Action:", the tool envs get the raw turn (AgentGym's 2024
    clients). Their servers have no /close: the client tries once per server and then stops asking. A fake
    server records the wire."""
    import json as _json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from envs import protocol
    seen = []

    class Fake(BaseHTTPRequestHandler):
        def _reply(self, obj, code=200):
            data = _json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = _json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"null")
            seen.append(("POST", self.path, body))
            if self.path.endswith("/create"):
                return self._reply(7)
            if self.path.endswith("/reset"):
                return self._reply({})
            if self.path.endswith("/close"):
                return self._reply({"detail": "Not Found"}, 404)
            key = "state" if "webshop" in self.server.name else "observation"
            return self._reply({key: f"did {body['action']}", "reward": 1.0, "done": True})

        def do_GET(self):
            seen.append(("GET", self.path, None))
            self._reply("WebShop [SEP] Instruction: [SEP] red mug")

        def log_message(self, *a):
            pass

    for name in ("webshop", "weather"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
        server.name = name
        threading.Thread(target=server.serve_forever, daemon=True).start()
        seen.clear()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}"
            env = make_env(name, server=url)
            assert env.instruction() == protocol.INSTRUCTION[name] and env.ack == "Ok."
            assert env.max_rounds == 10 and env.parse_action is env_class(name).parse_action  # its class's facts
            assert env.reset(3) == "WebShop [SEP] Instruction: [SEP] red mug"
            turn = "Thought:\nI think I should search.\n\nAction:\nsearch[red mug]\nAction:\nclick[b01]"
            obs, reward, done = env.step(turn)
            env.close()
            env.close()  # once only
            make_env(name, server=url).close()  # the server has no /close: not asked again
        finally:
            server.shutdown()
        assert (reward, done) == (1.0, True)
        assert seen[0] == ("POST", "/create", {"id": 0} if name == "weather" else None)
        assert seen[1] == ("POST", "/reset", {"session_id": 3, "env_idx": 7} if name == "webshop"
                           else {"id": 3, "env_idx": 7})
        assert seen[2] == ("GET", "/observation?env_idx=7", None)
        assert obs == ("did search[red mug]" if name == "webshop" else f"did {turn}")
        assert [x[:2] for x in seen[4:]] == [("POST", "/close"), ("POST", "/create")]


@pytest.mark.parametrize("name", FOUR)
def test_bundled_train_trajectories_replay_in_the_current_env(name):
    """data/<env>_train.jsonl must still be what the env does: replaying each sampled record's assistant turns
    gives the record's observations, word for word, and a solved episode (catches env changes that make the
    bundled data stale)."""
    needs(name)
    from trajectory import read_records
    recs = read_records(os.path.join(ROOT, "data", f"{name}_train.jsonl"))
    assert len(recs) >= 200
    env = make_env(name)
    try:
        for rec in recs[::len(recs) // (3 if name == "sciworld" else 20)]:
            conv = rec["conversations"]
            task = int(rec["item_id"].rsplit("_", 1)[1])
            never = lambda convs, envs, temperature=None: [None] * len(convs)  # the replay must end the episode
            res = run_episode(env, never, task, replay=[t["value"] for t in conv[3::2]])
            assert res["conversations"] == conv, rec["item_id"]
            assert res["success"] == 1 and res["end"] == "done", rec["item_id"]
    finally:
        env.close()
