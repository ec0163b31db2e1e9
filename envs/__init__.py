"""Environments for the agent-environment loop (agent.py): the built-in offline ones and an HTTP client for
AgentGym's environment servers. What a model sees and how its turn is read follow AgentGym's clients as of its
first commit (f434743, 2024-06-06), kept in one place: envs/protocol.py.

    from envs import make_env
    env = make_env("maze")                                   # built-in, in-process, with a scripted expert
    env = make_env("webshop", server="http://host:36001")    # any AgentGym env server (no expert over HTTP)
    python -m envs.serve --env babyai --port 8000            # serve a built-in env with AgentGym's protocol

Every environment is a class of its own with its facts on it (split, Table-1 column, round limit, score kind,
success rule, action parsing) and the interface agent.py plays: envs/base.py documents both. REGISTRY below names
them all, in the paper's Table-1 order; the stages ask it (env_class, names, make_env), never a list of their own.
A new environment is one file, envs/foo.py (`class FooEnv(envs.base.Env)` with its facts, task_ids, instruction,
reset, step, expert_turn, close) and one line here.

Built-in envs (BUILTIN) run in-process and have an expert; the others (AgentGym's webshop, alfworld and tool
envs) are played over HTTP with their class's facts. jericho and pddl are AgentBoard's, played on AgentBoard's data
folder (--agentboard-data DIR or ATLAS_AGENTBOARD_DATA; envs/agentboard.py); pddlgym is our offline stand-in for
pddl on pddlgym's problem files, not one of the paper's columns. Success: reward == 1 (reward == 100 for sciworld,
reward > 0 for babyai); see each class's `success`.
"""
import importlib

from envs.protocol import LONG_ACK

# name -> "module:Class", imported on first use (importing envs loads no simulator). The order is the paper's
# Table 1, held-in first, then the envs of no paper column: the report lays out its columns in it.
REGISTRY = {
    "alfworld": "envs.agentgym:AlfWorldEnv",
    "babyai": "envs.babyai:BabyAIEnv",
    "maze": "envs.maze:MazeEnv",
    "movie": "envs.agentgym:MovieEnv",
    "sciworld": "envs.sciworld:SciWorldEnv",
    "textcraft": "envs.textcraft:TextCraftEnv",
    "todo": "envs.agentgym:TodoEnv",
    "weather": "envs.agentgym:WeatherEnv",
    "webshop": "envs.agentgym:WebShopEnv",
    "wordle": "envs.wordle:WordleEnv",
    "academia": "envs.agentgym:AcademiaEnv",
    "sheet": "envs.agentgym:SheetEnv",
    "jericho": "envs.jericho:JerichoEnv",
    "pddl": "envs.pddl:PDDLEnv",
    "pddlgym": "envs.pddl:PDDLGymEnv",
}

# The gpt turn after the instruction for every env but webshop and the tool envs (each class has its own `ack`);
# agent.py falls back to it for an env without one.
ACK = LONG_ACK


def env_class(name):
    """The class of env `name` (its facts without an instance); ValueError naming the known envs otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown environment {name!r}; known: {', '.join(REGISTRY)}")
    module, _, cls_name = REGISTRY[name].partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    if cls.name != name:  # an item id "<name>_<task>" is made from the class's name: the two must agree
        raise ValueError(f"envs/__init__.py: REGISTRY[{name!r}] is {REGISTRY[name]}, whose name is {cls.name!r}")
    return cls


def names(split=None):
    """The registered env names in registry order; with `split` ("held-in" or "held-out") only that split's."""
    return [n for n in REGISTRY if split is None or env_class(n).split == split]


def success(env_name, reward):
    """Task solved, by the env's own rule (`success` on its class); an unregistered name (a test's stand-in env)
    gets the default rule, full reward."""
    from envs.base import Env
    return (env_class(env_name) if env_name in REGISTRY else Env).success(reward)


def builtin_names():
    """The envs that run in-process, with an expert (BUILTIN)."""
    return tuple(n for n in REGISTRY if env_class(n).builtin)


def served_rounds():
    """{name: max_rounds} of the envs with an HTTP client here (MAX_ROUNDS): AgentGym's and our own pddl (served by
    envs.serve), whose texts are in envs/protocol.py. make_env(name, server=URL) plays these."""
    from envs import protocol
    return {n: env_class(n).max_rounds for n in REGISTRY if n in protocol.INSTRUCTION}


def __getattr__(attr):
    """envs.BUILTIN and envs.MAX_ROUNDS, read off the classes on first use: `import envs` imports none of them."""
    if attr not in ("BUILTIN", "MAX_ROUNDS"):
        raise AttributeError(f"module 'envs' has no attribute {attr!r}")
    value = globals()[attr] = builtin_names() if attr == "BUILTIN" else served_rounds()
    return value


def make_env(name, server=None, **kwargs):
    """An environment instance by name: the built-in one when `server` is None, else an AgentGym HTTP client
    for the server at URL `server` (with the env's facts). Unknown names raise ValueError listing the known ones."""
    cls = env_class(name) if name in REGISTRY else None
    served = served_rounds()  # once per call: it reads every registered class
    if cls is not None and not cls.builtin and name not in served:
        return cls(**kwargs)  # facts only: its constructor says why it cannot run
    if server is not None:
        if cls is None or name not in served:
            what = "unknown environment" if cls is None else "no HTTP client here for environment"
            raise ValueError(f"{what} {name!r}; AgentGym environments: {', '.join(served)}")
        from envs.agentgym import HTTPEnv
        return HTTPEnv(name, server, **kwargs)
    if cls is not None and cls.builtin:
        return cls(**kwargs)
    hint = " (it needs --env-server URL)" if cls is not None else ""
    raise ValueError(f"unknown built-in environment {name!r}{hint}; built-in environments: "
                     f"{', '.join(builtin_names())}")
