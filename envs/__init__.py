"""Environments for the agent-environment loop (agent.py): the built-in offline ones and an HTTP client for
AgentGym's environment servers. What a model sees and how its turn is read follow AgentGym's clients as of its
first commit (f434743, 2024-06-06), kept in one place: envs/protocol.py.

    from envs import make_env
    env = make_env("maze")                                   # built-in, in-process, with a scripted expert
    env = make_env("webshop", server="http://host:36001")    # any AgentGym env server (no expert over HTTP)
    python -m envs.serve --env babyai --port 8000            # serve a built-in env with AgentGym's protocol

Every environment implements exactly this interface (the built-ins and envs.agentgym.HTTPEnv alike):

    class XEnv:
        name: str                          # "babyai", "sciworld", "maze", "wordle", or an AgentGym name
        max_rounds: int                    # AgentGym's max rounds for the env (MAX_ROUNDS below)
        def task_ids(self) -> Sequence[int]     # all valid task ids (None over HTTP: the server knows)
        ack: str                           # the gpt turn after the instruction: protocol.ACK[name]
        def instruction(self) -> str       # the first human turn: protocol.INSTRUCTION[name]
                                           # (the conversation is then instruction, ack, first observation,
                                           # assistant, observation, ...)
        def reset(self, task_id: int) -> str    # deterministic for a task id; returns the first observation
                                                # (protocol.first_observation of the server's answers)
        def step(self, text: str) -> tuple[str, float, bool]
                                           # text = the whole assistant turn ("Thought: ...\nAction: ...");
                                           # the action is protocol.parse_action(name, text), exactly as
                                           # AgentGym's 2024 client sends it; an invalid or unparsable action
                                           # gives the server's error observation and NEVER an exception.
                                           # returns (observation, reward, done); reward is what the client
                                           # reports (babyai/sciworld: the server's "score"), the episode's
                                           # reward is the last one returned.
        def expert_turn(self) -> str       # the scripted expert's next turn from the current state:
                                           # "Thought: <short reason>\nAction: <action>" (built-ins only;
                                           # HTTP envs raise NotImplementedError)
        def close(self)                    # free resources (the server-side env, java process, ...)

Success: reward == 1 (reward == 100 for sciworld, reward > 0 for babyai); see `success()`. Built-in envs are
constructed with no arguments; one instance runs one episode at a time (agent.py makes one instance per
concurrent episode). Built-in names: BUILTIN (textcraft is held-in, pddl held-out and scored by progress rate: its
reward is the best share of goal conditions met so far).
"""
from envs.protocol import LONG_ACK, first_action

# AgentGym's max interaction rounds per environment (AgentGym paper, Table / agentenv eval configs).
MAX_ROUNDS = {
    "webshop": 10, "alfworld": 30, "textcraft": 20, "sciworld": 30, "wordle": 8, "maze": 15, "babyai": 20,
    "pddl": 30, "weather": 10, "movie": 12, "todo": 15, "academia": 12, "sheet": 15,
}

# The gpt turn after the instruction for every env but webshop and the tool envs (protocol.ACK has them all);
# agent.py falls back to it for an env without an `ack`.
ACK = LONG_ACK

BUILTIN = ("babyai", "sciworld", "maze", "wordle", "textcraft", "pddl")


# The 2024 clients' parsing for babyai, sciworld, maze, wordle, webshop and alfworld (protocol.parse_action has
# every env): the text after the first "Action:", "</s>" cut with the character before it.
split_action = first_action


def success(env_name, reward):
    """Task solved: full reward (100 on SciWorld's 0..100 scale, 1 elsewhere). AgentGym's evaluator counts
    `reward == 1` for every env, which can never hold on BabyAI: minigrid pays 1 - 0.9 * steps / max_steps, and
    only on completion. So a BabyAI task counts as solved when its reward is > 0 (AgentGym, and the paper's
    Table 1, report BabyAI's mean reward instead; evaluate.py --report does the same)."""
    if env_name == "babyai":
        return float(reward) > 0.0
    return float(reward) >= (100.0 if env_name == "sciworld" else 1.0)


def make_env(name, server=None, **kwargs):
    """An environment instance by name: the built-in one when `server` is None, else an AgentGym HTTP client
    for the server at URL `server`. Unknown names raise ValueError listing the known ones."""
    if server is not None:
        if name not in MAX_ROUNDS:
            raise ValueError(f"unknown environment {name!r}; AgentGym environments: {', '.join(MAX_ROUNDS)}")
        from envs.agentgym import HTTPEnv
        return HTTPEnv(name, server, **kwargs)
    if name == "babyai":
        from envs.babyai import BabyAIEnv
        return BabyAIEnv(**kwargs)
    if name == "sciworld":
        from envs.sciworld import SciWorldEnv
        return SciWorldEnv(**kwargs)
    if name == "maze":
        from envs.maze import MazeEnv
        return MazeEnv(**kwargs)
    if name == "wordle":
        from envs.wordle import WordleEnv
        return WordleEnv(**kwargs)
    if name == "textcraft":
        from envs.textcraft import TextCraftEnv
        return TextCraftEnv(**kwargs)
    if name == "pddl":
        from envs.pddl import PDDLEnv
        return PDDLEnv(**kwargs)
    hint = " (it needs --env-server URL)" if name in MAX_ROUNDS else ""
    raise ValueError(f"unknown built-in environment {name!r}{hint}; built-in environments: {', '.join(BUILTIN)}")
