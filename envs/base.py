"""What an environment is: the facts the other stages read off it (class attributes) and the interface the agent
loop (agent.py) plays it through. Every environment of this project is a subclass of `Env`: the built-ins
(envs/babyai.py, ...), the facts of the envs AgentGym serves (envs/agentgym.py), and a forker's own. A new env is
one file, envs/foo.py with `class FooEnv(Env)`, and one line in envs/__init__.py's REGISTRY; evaluate.py, the
report and agent.py then know its round limit, its success rule, how its score is shown and where its column goes.

    from envs.base import Env

    class FooEnv(Env):
        name = "foo"
        max_rounds = 12
        def task_ids(self): return range(100)
        def instruction(self): return "You are ..."
        def reset(self, task_id): ...
        def step(self, text): ...
        def expert_turn(self): ...

The interface (the built-ins and envs.agentgym.HTTPEnv alike):

    name: str                          # the registry name: "babyai", "sciworld", ..., or an AgentGym name
    max_rounds: int                    # AgentGym's max rounds for the env (the episode's assistant turns at most)
    ack: str                           # the gpt turn after the instruction (protocol.ACK[name] for AgentGym's)
    def task_ids(self) -> Sequence[int]     # all valid task ids (None over HTTP: the server knows)
    def instruction(self) -> str       # the first human turn (protocol.INSTRUCTION[name] for AgentGym's)
                                       # (the conversation is then instruction, ack, first observation,
                                       # assistant, observation, ...)
    def reset(self, task_id: int) -> str    # deterministic for a task id; returns the first observation
                                            # (protocol.first_observation of the server's answers)
    def step(self, text: str) -> tuple[str, float, bool]
                                       # text = the whole assistant turn ("Thought: ...\nAction: ...");
                                       # the action is self.parse_action(text), exactly as AgentGym's 2024
                                       # client sends it; an invalid or unparsable action gives the server's
                                       # error observation and NEVER an exception.
                                       # returns (observation, reward, done); reward is what the client
                                       # reports (babyai/sciworld: the server's "score"), the episode's
                                       # reward is the last one returned.
    def expert_turn(self) -> str       # the scripted expert's next turn from the current state:
                                       # "Thought: <short reason>\nAction: <action>" (built-ins only;
                                       # HTTP envs raise NotImplementedError)
    def close(self)                    # free resources (the server-side env, java process, ...)

Built-in envs are constructed with no arguments; one instance runs one episode at a time (agent.py makes one
instance per concurrent episode).
"""
from envs import protocol

SPLITS = ("held-in", "held-out", None)
SCORES = ("rate", "mean", "progress")
# The facts HTTPEnv copies from its env's class (it plays any of them over the wire, always without an expert).
FACTS = ("name", "split", "column", "max_rounds", "score", "scale", "lowest", "ack")


class Env:
    # ---- facts: read off the class (envs.env_class(name)), never by testing the name elsewhere
    name = None           # the registry name; results name their env by it ("<name>_<task id>" item ids)
    split = None          # "held-in" | "held-out": the paper's Table 1 split; None: not in the paper's tables (the
    #                       report shows it under "other")
    column = None         # its Table-1 header ("Alfworld", "Academic", "PDDL"); None: name.title()
    max_rounds = 20       # assistant turns per episode at most (AgentGym's max rounds for AgentGym's envs)
    score = "rate"        # how the report scores it: "rate" = success rate, "mean" = mean reward, "progress" = mean
    #                       of a result's "progress" field (the best share of the goal reached), else of its reward
    scale = 100.0         # "mean" / "progress": the multiplier that puts the reward on the report's 0..100 axis
    lowest = 0.0          # the lowest score on that 0..100 scale (ScienceWorld's score goes down to -100)
    ack = protocol.LONG_ACK  # the gpt turn after the instruction (AgentGym: "Ok." for webshop and the tool envs)
    builtin = True        # runs in-process and has an expert; False: only an AgentGym server plays it (HTTPEnv)

    def __init_subclass__(cls, **kwargs):
        """Check the facts once, when the class is made: a typo fails on import, naming the class, not as a wrong
        table later."""
        super().__init_subclass__(**kwargs)
        where = f"{cls.__module__}.{cls.__qualname__}"
        if "column" not in vars(cls) and ("name" in vars(cls) or cls.column is None):
            cls.column = cls.name.title() if cls.name else None  # a new name gets its own header, not its parent's
        if cls.split not in SPLITS:
            raise TypeError(f"{where}: split {cls.split!r}: expected 'held-in', 'held-out' or None")
        if cls.score not in SCORES:
            raise TypeError(f"{where}: score {cls.score!r}: expected one of {', '.join(SCORES)}")
        for method in ("success", "parse_action"):
            # read off the class without an instance (envs.success, HTTPEnv): an instance method would take the
            # reward or the text as `self`
            if method in vars(cls) and not isinstance(vars(cls)[method], (staticmethod, classmethod)):
                raise TypeError(f"{where}.{method}: declare it @staticmethod (it is called on the class)")

    @staticmethod
    def success(reward):
        """Task solved: full reward. AgentGym's evaluator counts `reward == 1` for every env; SciWorld overrides
        this (100 on its 0..100 scale) and BabyAI does (minigrid pays 1 - 0.9 * steps / max_steps, so never 1)."""
        return float(reward) >= 1.0

    @staticmethod
    def parse_action(text):
        """The action AgentGym's 2024 client sends for the assistant turn `text`: the text after the first
        "Action:" (protocol.first_action). TextCraft and the tool envs have their own."""
        return protocol.first_action(text)

    # ---- the interface (see the docstring): a subclass writes these
    def task_ids(self):
        raise NotImplementedError(f"{type(self).__name__}.task_ids")

    def instruction(self):
        raise NotImplementedError(f"{type(self).__name__}.instruction")

    def reset(self, task_id):
        raise NotImplementedError(f"{type(self).__name__}.reset")

    def step(self, text):
        raise NotImplementedError(f"{type(self).__name__}.step")

    def expert_turn(self):
        raise NotImplementedError(f"{type(self).__name__} has no expert")

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
