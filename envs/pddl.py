"""PDDL, held out in the paper (AgentBoard, Ma et al. 2024): classical planning problems, actions as text, scored by
progress rate; with a planner expert (pyperplan). Two envs, one file:

    pddl      PDDLEnv: the paper's column. AgentBoard's own domains and problems (Gripper, Blocksworld, Barman,
              Tyreworld) from its data folder (envs/agentboard.py), its task order and its progress rate.
    pddlgym   PDDLGymEnv: an offline stand-in on pddlgym's problem files (below), NOT AgentBoard's: the report shows
              it under "other" as "PDDL (pddlgym)", never as the paper's PDDL.

    python evaluate.py --env pddl --agentboard-data AgentBoard/data --policy expert ...   # or ATLAS_AGENTBOARD_DATA
    python evaluate.py --env pddlgym --policy expert         # the test ids of data/pddlgym_test_ids.txt

pddl (AgentBoard's). Tasks: AgentBoard's games in its order, gripper, blockworld, barman, tyreworld, each the first
min(20, n) problem files of agentboard/environment/pddl_env/pddlgym/pddl/<game>/ sorted by name (as pddlgym loads
them: problem1, problem10, problem2, ...), 20 + 10 + 20 + 10 = 60 with AgentBoard's files; line i of
data/pddl/test.jsonl ("difficulty") labels task i, and the file must have one line per task. Progress rate, as
AgentBoard computes it: the share of the goal's atoms that hold, the best so far, updated by every action that
changes the state; success = every goal atom holds (reward 1), which ends the episode. 30 rounds (AgentBoard's
max_num_steps). The action (the text after the first "Action:", AgentGym's client rule) is read as AgentBoard reads
it: its first word that names an action of the domain, then the words that name objects, in order, as many as
the action takes ("pick ball1 rooma left", "stack b1 on b2"); any action with "check" in it lists the valid
actions, "look around" repeats the state. Our ReAct protocol: the instruction (AGENTBOARD_INSTRUCTION), the ack,
then the first observation "Domain: <game>\\nActions: <action> <parameter type> ...; ...\\nGoal: <atoms>\\nFacts that
do not change: <atoms>\\nObservation: <atoms>", atoms written as in PDDL ("(at ball1 rooma)"), and every valid
action answers the whole state. What AgentBoard does differently: its prompt describes each domain in its own
words with in-context examples, and writes atoms and actions as English sentences; barman's and tyreworld's
observations show only the atoms that changed; an invalid action gets its one fixed message (ours says whether the
action was not understood or is not possible now).

pddlgym (ours, offline). THE PROBLEMS ARE PDDLGYM'S, NOT AGENTBOARD'S: the `pddlgym` package (Silver & Chitnis
2020, MIT licence) ships domain and problem files, and we read those files (never importing pddlgym itself, which
would need the old `gym`). Domains, as pddlgym names them: Gripper (`gripper`, `manygripper`), Blocksworld
(`blocks`, `generated_blocks`) and Ferry (`manyferry`, a transport domain in place of AgentBoard's
Tyreworld/Barman, which pddlgym does not have). So numbers from this env are comparable with each other, not with
the paper's AgentBoard column.

Episode (pddlgym): the first observation names the domain, the goal and the state ("Domain: gripper\nGoal: ball1
is in roomb. ...\nObservation: Robby is in rooma. ..."); each turn's action (the text after "Action:", AgentGym's
client parsing) is one of the domain's actions in words ("pick ball1 in rooma with left") or "check valid actions".
A valid action answers the new state; an invalid one answers why ("... is not an action of this domain", or which
preconditions do not hold) and changes nothing. Reward = progress rate = the largest share of goal atoms that held
at any point of the episode (AgentBoard's metric), exposed as `progress`; success = all goal atoms hold (reward 1),
which ends the episode. 30 rounds (AgentBoard's max_num_steps).

Task ids (pddlgym): the problems in a fixed order (SOURCES; within a source by problem number over pddlgym's train
and test folders together): id -> (domain, folder, file) via `problem_of`; 0-19 IPC gripper prob01-20, 20-59
manygripper, 60-69 blocks, 70-119 generated_blocks, 120-159 manyferry. The test ids (data/pddlgym_test_ids.txt) are
20 per domain, as AgentBoard has: gripper 0-3 (prob01-04, 4-10 balls; prob05 on needs more than 30 steps) and 20-35,
blocksworld 60-79, ferry 120-139. There is no training data: PDDL is held out. Grounding and planning use pyperplan
(pure Python): the expert of both envs plans with greedy best-first search on h_FF from the current state and
follows the plan.
"""
import logging
import os
import re

from envs import agentboard, protocol
from envs.base import Env

MAX_ROUNDS = 30  # AgentBoard's max_num_steps for every task

# (domain, pddlgym domain file, [problem folders]) in task-id order
SOURCES = [
    ("gripper", "gripper", ["gripper", "gripper_test"]),
    ("gripper", "manygripper", ["manygripper"]),
    ("blocksworld", "blocks", ["blocks", "blocks_test"]),
    ("blocksworld", "generated_blocks", ["generated_blocks", "generated_blocks_test"]),
    ("ferry", "manyferry", ["manyferry"]),
]
# Left out: pddlgym's manygripper_test and manyferry_test (its generalisation tests: 100,000+ grounded actions,
# 15-20 goal atoms) and blocks_medium (10-29 blocks, plans of 30-90 steps): far beyond 30 steps.

# Facts as sentences; the arguments are the atom's, in order. Atoms not listed (types, the action literals
# pddlgym puts in its problems, not-eq) are static bookkeeping and are not told.
FACTS = {
    "at-robby": "Robby is in {0}.",
    "at": "{0} is in {1}.",            # gripper: a ball in a room; ferry: a car at a location
    "free": "The {0} gripper is free.",
    "carry": "Robby carries {0} in the {1} gripper.",
    "on": "{0} is on {1}.",            # blocksworld (ferry's one-argument "on" is FERRY_FACTS)
    "ontable": "{0} is on the table.",
    "clear": "{0} is clear.",
    "handempty": "The hand is empty.",
    "handfull": "The hand is full.",
    "holding": "The hand holds {0}.",
}
FERRY_FACTS = {"at": "{0} is at {1}.", "at-ferry": "The ferry is at {0}.", "empty-ferry": "The ferry is empty.",
               "on": "{0} is on the ferry."}

# Operator name -> (the action in words with the operator's arguments {0}, {1}, ..., its general form)
ACTIONS = {
    "move": ("move from {0} to {1}", "move from <room> to <room>"),
    "pick": ("pick {0} in {1} with {2}", "pick <ball> in <room> with <gripper>"),
    "drop": ("drop {0} in {1} with {2}", "drop <ball> in <room> with <gripper>"),
    "pick-up": ("pick up {0}", "pick up <block>"),
    "put-down": ("put down {0}", "put down <block>"),
    "stack": ("stack {0} on {1}", "stack <block> on <block>"),
    "unstack": ("unstack {0} from {1}", "unstack <block> from <block>"),
    "sail": ("sail from {0} to {1}", "sail from <location> to <location>"),
    "board": ("board {0} at {1}", "board <car> at <location>"),
    "debark": ("debark {0} at {1}", "debark <car> at <location>"),
}
DOMAIN_ACTIONS = {"gripper": ("move", "pick", "drop"), "blocksworld": ("pick-up", "put-down", "stack", "unstack"),
                  "ferry": ("sail", "board", "debark")}

# the prompt of the pddlgym env lives with every other prompt, in envs/protocol.py
INSTRUCTION = protocol.INSTRUCTION["pddlgym"]


def pddl_dir():
    """pddlgym's folder of PDDL files, found without importing pddlgym (its __init__ needs gym)."""
    import importlib.util
    spec = importlib.util.find_spec("pddlgym")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the pddl env reads pddlgym's problem files: pip install pddlgym==0.0.7 "
                          "(--no-deps is enough)")
    return os.path.join(spec.submodule_search_locations[0], "pddl")


def _number(name):
    return int(re.sub(r"\D", "", name) or 0)


_PROBLEMS = None


def problems():
    """[(domain, domain file, problem path), ...] in task-id order."""
    global _PROBLEMS
    if _PROBLEMS is None:
        root, out = pddl_dir(), []
        for domain, dfile, folders in SOURCES:
            files = [(folder, f) for folder in folders for f in os.listdir(os.path.join(root, folder))
                     if f.endswith(".pddl")]
            for folder, f in sorted(files, key=lambda x: (_number(x[1]), x)):
                out.append((domain, os.path.join(root, dfile + ".pddl"), os.path.join(root, folder, f)))
        _PROBLEMS = out
    return _PROBLEMS


def problem_of(task_id):
    """Task id -> (domain, "folder/file") of its pddlgym problem."""
    domain, _, path = problems()[int(task_id)]
    return domain, os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))


_TASKS = {}


def ground(task_id, relevant_only=False):
    """The grounded pyperplan task of pddlgym problem `task_id` (ground_files)."""
    _, dfile, pfile = problems()[int(task_id)]
    return ground_files(dfile, pfile, relevant_only)


def parse(dfile, pfile):
    """pyperplan's parsed (domain, problem) of a domain and a problem file."""
    from pyperplan.pddl.parser import Parser
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))  # pyperplan logs at INFO
    parser = Parser(dfile, pfile)
    domain = parser.parse_domain()
    return domain, parser.parse_problem(domain)


def ground_files(dfile, pfile, relevant_only=False):
    """The grounded pyperplan task of a problem (cached): facts and operators as strings like "(at ball1 rooma)".
    The env keeps every operator (an action that does not help the goal is still a legal move); the planner may
    search only the operators relevant to the goal, which is much faster on the many-object problems."""
    key = (dfile, pfile, relevant_only)
    if key not in _TASKS:
        from pyperplan import grounding
        _TASKS[key] = grounding.ground(parse(dfile, pfile)[1], remove_irrelevant_operators=relevant_only)
    return _TASKS[key]


def atom(fact):
    """"(at ball1 rooma)" -> ("at", ["ball1", "rooma"])."""
    name, *args = fact.strip("()").split()
    return name, args


def sentence(domain, fact):
    name, args = atom(fact)
    template = (FERRY_FACTS.get(name) if domain == "ferry" else None) or FACTS.get(name)
    if template is None:
        return None
    return template.format(*args)


def describe(domain, facts):
    """Facts as sentences, in a fixed order (sorted facts); untold bookkeeping atoms are left out."""
    return " ".join(s for s in (sentence(domain, f) for f in sorted(facts)) if s)


def action_text(op_name):
    """"(pick ball1 rooma left)" -> "pick ball1 in rooma with left"."""
    name, args = atom(op_name)
    return ACTIONS[name][0].format(*args)


class PDDLGymEnv(Env):
    # ours, offline: not one of the paper's columns (split None), scored by progress rate (x100 in the report);
    # actions parsed as AgentGym's 2024 clients do (Env's)
    name, split, column, max_rounds, score = "pddlgym", None, "PDDL (pddlgym)", MAX_ROUNDS, "progress"

    def __init__(self):
        self.done = True
        self.progress = 0.0
        self._plan, self.steps = [], 0

    def task_ids(self):
        return range(len(problems()))

    def instruction(self):
        return INSTRUCTION

    def reset(self, task_id):
        task_id = int(task_id)
        if not 0 <= task_id < len(problems()):
            raise ValueError(f"pddlgym task id {task_id} out of range 0..{len(problems()) - 1}")
        self.domain, self.dfile, self.pfile = problems()[task_id]
        self.start(ground(task_id))
        return (f"Domain: {self.domain}\nGoal: {self.say(self.task.goals)}\n"
                f"Observation: {self.say(self.state)}")

    def start(self, task):
        """A new episode on the grounded `task`."""
        self.task = task
        self.ops = {self.act(op.name): op for op in sorted(self.task.operators, key=lambda o: o.name)}
        self.state = frozenset(self.task.initial_state)
        self.progress = self.rate()
        self.done = self.progress == 1.0
        self._plan, self.steps = [], 0

    def say(self, facts):
        """Facts as the model reads them."""
        return describe(self.domain, facts)

    @staticmethod
    def act(op_name):
        """A grounded operator's name as the action the model writes."""
        return action_text(op_name)

    def rate(self):
        """The share of goal atoms that hold now."""
        return len(self.task.goals & self.state) / len(self.task.goals)

    def valid_actions(self):
        return [text for text, op in self.ops.items() if op.applicable(self.state)]

    def step(self, turn):
        if self.done:
            return "The task has finished.", self.progress, True
        self.steps += 1
        action = " ".join(self.parse_action(turn).split())  # AgentGym's client parsing, spaces collapsed
        if action.lower() == "check valid actions":
            return "Valid actions: " + ", ".join(self.valid_actions()) + ".", self.progress, False
        op = self.ops.get(action)
        if op is None:
            forms = [ACTIONS[a][1] for a in DOMAIN_ACTIONS[self.domain]]
            if any(action.startswith(f.split(" <")[0] + " ") for f in forms):
                return (f'"{action}" is not a valid action here: check the names of the objects.', self.progress,
                        False)
            return (f'"{action}" is not an action of this domain. The actions are: ' + "; ".join(forms)
                    + '; check valid actions.', self.progress, False)
        if not op.applicable(self.state):
            missing = describe(self.domain, op.preconditions - self.state) or "some static condition"
            return (f'You cannot {action} now: these conditions do not hold: {missing}', self.progress, False)
        return self.apply(op)

    def apply(self, op):
        """Apply an applicable operator: the new state, the best progress so far, done when every goal atom holds."""
        self.state = frozenset(op.apply(self.state))
        self.progress = max(self.progress, self.rate())
        self.done = self.progress == 1.0
        return self.say(self.state), self.progress, self.done

    # ---- the expert
    def expert_turn(self):
        """Follow a pyperplan plan from the current state (replanned whenever the state is not the plan's)."""
        if not self._plan or self._plan[0][0] != self.state:
            self._plan = self.make_plan()
        if not self._plan:
            return ("Thought:\nNo plan reaches the goal from here; let me see what I can do.\n\n"
                    "Action:\ncheck valid actions")
        state, op = self._plan.pop(0)
        unmet = sorted(self.task.goals - self.state)
        todo = self.say(unmet)
        thought = (f"{len(unmet)} of {len(self.task.goals)} goal conditions still to reach: {todo} "
                   f"The plan needs {len(self._plan) + 1} more actions; the next is to {self.act(op.name)}.")
        return f"Thought:\n{thought}\n\nAction:\n{self.act(op.name)}"

    def make_plan(self):
        """[(state before, operator), ...] from the current state to the goal: greedy best-first search on h_FF
        over the goal-relevant operators (over all of them if that finds nothing); when that plan does not fit the
        rounds left, weighted A* (w = 2, slower, shorter plans) too, and the shorter plan is kept."""
        from pyperplan.heuristics.relaxation import hFFHeuristic
        from pyperplan.search import greedy_best_first_search, weighted_astar_search
        from pyperplan.task import Task
        for grounded in (ground_files(self.dfile, self.pfile, relevant_only=True), self.task):
            # sorted operators: the search breaks ties in their order, which must not depend on the hash seed
            ops = sorted(grounded.operators, key=lambda o: o.name)
            task = Task(grounded.name, grounded.facts | self.state, self.state, grounded.goals, ops)
            plan = greedy_best_first_search(task, hFFHeuristic(task))
            if plan and len(plan) > self.max_rounds - self.steps:
                other = weighted_astar_search(task, hFFHeuristic(task), weight=2)
                plan = other if other and len(other) < len(plan) else plan
            if plan:
                break
        out, state = [], self.state
        for op in plan or []:
            out.append((state, op))
            state = frozenset(op.apply(state))
        return out

    def close(self):
        self.done = True


# ----------------------------------------------------------------------------- AgentBoard's PDDL (the paper's)
GAMES = ("gripper", "blockworld", "barman", "tyreworld")  # AgentBoard's eval config's game_name, in its order
PER_GAME = 20                                            # its env_num_per_task
PDDL_DIR = os.path.join("agentboard", "environment", "pddl_env", "pddlgym", "pddl")
CHECK, LOOK = "check valid actions", "look around"

AGENTBOARD_INSTRUCTION = """\
You are a robot that solves classical planning problems step by step. A problem comes from one of four domains: \
Gripper (a robot with two grippers carries balls between rooms), Blocksworld (one arm stacks and unstacks blocks), \
Barman (two hands, shot glasses, a shaker and dispensers make cocktails) and Tyreworld (replace flat tyres with \
intact, inflated ones, using the tools in the boot).

The first observation names the domain, its actions with their parameters, the goal, the facts that do not change \
and the current state. Facts are written as in PDDL: "(at ball1 rooma)" means ball1 is at rooma. An action is its \
name followed by its objects in the order of its parameters, e.g. "pick ball1 rooma left" for "pick <obj> <room> \
<gripper>". An action is possible only when its preconditions hold; a possible action answers the new state. You \
can also use "check valid actions" to list the actions possible now, and "look around" to see the state again.

Every round I give you an observation. The task is done when every goal fact holds. Answer in the following \
format:

Thought:
<your reasoning>

Action:
<one action>"""


_AB_PROBLEMS = {}


def agentboard_problems():
    """[(game, domain file, problem file, label line), ...] in AgentBoard's task order (cached per folder). One-line
    ValueError naming what is missing and where AgentBoard publishes it."""
    data, code = agentboard.folders("pddl")
    if data in _AB_PROBLEMS:
        return _AB_PROBLEMS[data]
    labels_path = agentboard.need("pddl", os.path.join(data, "pddl", "test.jsonl"), "PDDL's labels",
                                  f"AgentBoard's data, {agentboard.DATA_URL}")
    root = agentboard.need("pddl", os.path.join(code, PDDL_DIR), "AgentBoard's PDDL domains and problems",
                           f"in AgentBoard's code, {agentboard.CODE_URL}: put the data folder inside its clone")
    out = []
    for game in GAMES:
        dfile = agentboard.need("pddl", os.path.join(root, game + ".pddl"), f"the {game} domain",
                                agentboard.CODE_URL)
        folder = agentboard.need("pddl", os.path.join(root, game), f"the {game} problems", agentboard.CODE_URL)
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".pddl"))
        if not files:
            raise ValueError(f"pddl: {folder}: no problem files ({agentboard.CODE_URL})")
        out += [(game, dfile, f) for f in files[:PER_GAME]]  # sorted by name, as pddlgym orders them
    labels = agentboard.read_labels("pddl", labels_path, ("difficulty",))
    if len(labels) != len(out):
        raise ValueError(f"{labels_path}: {len(labels)} label lines for {len(out)} problems (one a problem, in "
                         f"the order {', '.join(GAMES)})")
    _AB_PROBLEMS[data] = [p + (label,) for p, label in zip(out, labels)]
    return _AB_PROBLEMS[data]


def param(name, types):
    """A parameter as the first observation lists it: its type ("<hand>"), or its name in an untyped domain."""
    typed = [t.name for t in types if t.name != "object"]
    return "/".join(typed) if typed else name.lstrip("?")


class PDDLEnv(PDDLGymEnv):
    # the paper's held-out PDDL column: AgentBoard's problems and progress rate
    name, split, column, max_rounds, score = "pddl", "held-out", "PDDL", MAX_ROUNDS, "progress"

    def __init__(self):
        super().__init__()
        agentboard_problems()  # no data folder, no problems: one line, before any episode

    def task_ids(self):
        return range(len(agentboard_problems()))

    def instruction(self):
        return AGENTBOARD_INSTRUCTION

    def reset(self, task_id):
        self.domain, self.dfile, self.pfile, self.label = agentboard.task("pddl", agentboard_problems(), task_id)
        self.start(ground_files(self.dfile, self.pfile))
        domain, problem = parse(self.dfile, self.pfile)
        told = {f"({p.name} {' '.join(a for a, _ in p.signature)})".replace(" )", ")") for p in problem.initial_state}
        statics = sorted(told - self.task.facts)  # pyperplan keeps them out of the state: told once, here
        self.objects = {a for op in self.task.operators for a in atom(op.name)[1]} | set(problem.objects)
        self.forms = {name: len(action.signature) for name, action in domain.actions.items()}
        actions = "; ".join(f"{name} " + " ".join(f"<{param(p, types)}>" for p, types in action.signature)
                            for name, action in sorted(domain.actions.items()))
        return (f"Domain: {self.domain}\nActions: {actions}\nGoal: {self.say(self.task.goals)}\n"
                f"Facts that do not change: {self.say(statics) or 'none'}\nObservation: {self.say(self.state)}")

    def say(self, facts):
        return " ".join(sorted(facts))

    @staticmethod
    def act(op_name):
        return op_name.strip("()")

    def read(self, action):
        """AgentBoard's reading of an action: the first word that names an action of the domain, then the words
        that name objects, in order (anywhere in the text), as many as the action takes; None when it names no
        action or too few objects."""
        words = re.findall(r"[a-z0-9_-]+", action.lower())
        name = next((w for w in words if w in self.forms), None)
        if name is None:
            return None
        objects = [w for w in words if w in self.objects][:self.forms[name]]
        if len(objects) < self.forms[name]:
            return None
        return " ".join([name] + objects)

    def step(self, turn):
        if self.done:
            return "The task has finished.", self.progress, True
        self.steps += 1
        action = self.parse_action(turn)
        if "check" in action.lower():  # AgentBoard's rule: any action that says "check"
            return "Valid actions: " + ", ".join(self.valid_actions() + [CHECK, LOOK]) + ".", self.progress, False
        if LOOK in action.lower():
            return self.say(self.state), self.progress, False
        text = self.read(action)
        op = self.ops.get(text) if text else None
        if op is None:
            return (f'"{action}" is not an action of this domain: write an action\'s name and then its objects; '
                    f'check valid actions.', self.progress, False)
        if not op.applicable(self.state):
            return f'"{text}" is not possible now and changes nothing; check valid actions.', self.progress, False
        obs, progress, done = self.apply(op)
        return (obs + " The goal is reached." if done else obs), progress, done
