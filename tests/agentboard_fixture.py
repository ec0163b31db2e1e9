"""A small AgentBoard folder of our own, in the layout AgentBoard's setup makes (envs/agentboard.py): a tiny Inform 6
game compiled at test time (Debian's inform6-compiler), its label lines, and small PDDL domains and problems. None
of it is AgentBoard's: the games, labels, domains and problems are written for these tests.

    from tests.agentboard_fixture import make
    data = make(tmp_path)            # tmp_path/AgentBoard/data; then ATLAS_AGENTBOARD_DATA=data
"""
import json
import os
import shutil
import subprocess

# A shore, a locked chest, a lamp and a dark cave: take the key, open the chest, take the lamp, light it, go north.
COVE = r'''
Constant Story "COVE";
Constant Headline "^A tiny test game.^";
Include "Parser";
Include "VerbLib";

Object Shore "Grey Shore"
  with description "Waves break on grey stones. An old chest sits above the tide line. A cave mouth opens to the
                    north.",
       n_to [; if (lamp hasnt on || lamp notin player) "It is too dark to go north without a light.";
               return Cave; ],
  has light;

Object -> key "rusty key"
  with name 'rusty' 'key',
       description "The key is cold and wet.",
       after [; Take: "You pick up the rusty key. It is cold and wet."; ];

Object -> chest "old chest"
  with name 'old' 'chest',
       before [; Open: if (key notin player) "The chest is locked tight.";
                       if (self has open) "The chest is already open.";
                       give self open; move lamp to self;
                       "The lid of the chest creaks open. Inside lies a brass lamp."; ],
  has container openable static;

Object lamp "brass lamp"
  with name 'brass' 'lamp',
       after [; Take: "You lift the brass lamp out of the chest.";
                SwitchOn: "The lamp flares into light."; ],
  has switchable;

Object Cave "Dark Cave"
  with description "You step into the cave, the lamp pushing back the dark. Treasure glitters on the walls.",
  has light;

[ Initialise; location = Shore; "^You wake on a cold beach.^"; ];

Include "Grammar";
'''
WALK = ["take key", "open chest", "take lamp", "turn on lamp", "north"]
# Line 0 is AgentBoard's first game, "905" (its goal from the goal table below); line 1 is "acorncourt", whose
# line carries its goal, and whose two subgoals both appear in the answer to "take key": one counts a step.
JERICHO_LABELS = [
    {"id": 0, "subgoals": ["You pick up the rusty key", "The lid of the chest creaks open.",
                           "The lamp flares into light", "You step into the cave"],
     "difficulty": "easy", "walkthrough": WALK},
    {"id": 1, "goal": "Find out how the key feels.", "subgoals": ["rusty key", "cold and wet"], "difficulty": "hard",
     "walkthrough": ["take key", "examine key"]},
]
# Our stand-in for AgentBoard's agentboard/environment/jericho_env.py: only its two literal tables are read.
JERICHO_TABLES = '''
import re  # the real file is code; only the literal tables below are read

game_goals = {
    "905": "Light the way into the cave north of the shore.",
}

game_init_obs = {
    "905": "Grey Shore - Waves break on grey stones. An old chest sits above the tide line. A cave mouth opens to "
           "the north. You can see a rusty key and an old chest here.",
}
'''

GRIPPER = """(define (domain gripper-fixture)
  (:predicates (room ?r) (ball ?b) (gripper ?g) (at-robby ?r) (at ?b ?r) (free ?g) (carry ?b ?g))
  (:action move :parameters (?from ?to)
    :precondition (and (room ?from) (room ?to) (at-robby ?from))
    :effect (and (at-robby ?to) (not (at-robby ?from))))
  (:action pick :parameters (?obj ?room ?gripper)
    :precondition (and (ball ?obj) (room ?room) (gripper ?gripper) (at ?obj ?room) (at-robby ?room) (free ?gripper))
    :effect (and (carry ?obj ?gripper) (not (at ?obj ?room)) (not (free ?gripper))))
  (:action drop :parameters (?obj ?room ?gripper)
    :precondition (and (ball ?obj) (room ?room) (gripper ?gripper) (carry ?obj ?gripper) (at-robby ?room))
    :effect (and (at ?obj ?room) (free ?gripper) (not (carry ?obj ?gripper)))))
"""
BLOCKS = """(define (domain blocks-fixture)
  (:predicates (clear ?x) (on-table ?x) (arm-empty) (holding ?x) (on ?x ?y))
  (:action pickup :parameters (?x)
    :precondition (and (clear ?x) (on-table ?x) (arm-empty))
    :effect (and (holding ?x) (not (clear ?x)) (not (on-table ?x)) (not (arm-empty))))
  (:action putdown :parameters (?x)
    :precondition (holding ?x)
    :effect (and (clear ?x) (arm-empty) (on-table ?x) (not (holding ?x))))
  (:action stack :parameters (?x ?y)
    :precondition (and (clear ?y) (holding ?x))
    :effect (and (arm-empty) (clear ?x) (on ?x ?y) (not (clear ?y)) (not (holding ?x))))
  (:action unstack :parameters (?x ?y)
    :precondition (and (on ?x ?y) (clear ?x) (arm-empty))
    :effect (and (holding ?x) (clear ?y) (not (on ?x ?y)) (not (clear ?x)) (not (arm-empty)))))
"""
# typed, like AgentBoard's barman and tyreworld; tyre has a constant, as AgentBoard's tyreworld has
BAR = """(define (domain bar-fixture)
  (:requirements :typing)
  (:types hand container dispenser)
  (:predicates (handempty ?h - hand) (holding ?h - hand ?c - container) (ontable ?c - container)
               (full ?c - container) (serves ?d - dispenser ?c - container))
  (:action grasp :parameters (?h - hand ?c - container)
    :precondition (and (handempty ?h) (ontable ?c))
    :effect (and (holding ?h ?c) (not (handempty ?h)) (not (ontable ?c))))
  (:action leave :parameters (?h - hand ?c - container)
    :precondition (holding ?h ?c)
    :effect (and (handempty ?h) (ontable ?c) (not (holding ?h ?c))))
  (:action fill :parameters (?c - container ?h - hand ?d - dispenser)
    :precondition (and (holding ?h ?c) (serves ?d ?c))
    :effect (full ?c)))
"""
TYRE = """(define (domain tyre-fixture)
  (:requirements :typing)
  (:types obj container - object tool wheel - obj)
  (:constants wrench - tool)
  (:predicates (closed ?c - container) (isopen ?c - container) (in ?x - obj ?c - container) (have ?x - obj))
  (:action open :parameters (?c - container)
    :precondition (closed ?c) :effect (and (isopen ?c) (not (closed ?c))))
  (:action close :parameters (?c - container)
    :precondition (isopen ?c) :effect (and (closed ?c) (not (isopen ?c))))
  (:action fetch :parameters (?x - obj ?c - container)
    :precondition (and (in ?x ?c) (isopen ?c)) :effect (and (have ?x) (not (in ?x ?c)))))
"""


def gripper_problem(balls):
    names = " ".join(f"ball{i}" for i in range(1, balls + 1))
    init = " ".join(f"(ball ball{i}) (at ball{i} rooma)" for i in range(1, balls + 1))
    goal = " ".join(f"(at ball{i} roomb)" for i in range(1, balls + 1))
    return (f"(define (problem gripper-{balls}) (:domain gripper-fixture)\n  (:objects rooma roomb {names} left "
            f"right)\n  (:init (room rooma) (room roomb) (gripper left) (gripper right) (at-robby rooma) (free left) "
            f"(free right) {init})\n  (:goal (and {goal})))\n")


def blocks_problem(init, goal, blocks=("b1", "b2", "b3")):
    return (f"(define (problem blocks) (:domain blocks-fixture)\n  (:objects {' '.join(blocks)})\n"
            f"  (:init (arm-empty) {init})\n  (:goal (and {goal})))\n")


# file name -> problem; blockworld's "problem10" sorts before "problem2", as in AgentBoard's folder
PDDL = {
    "gripper": (GRIPPER, {"prob01.pddl": gripper_problem(1), "prob02.pddl": gripper_problem(2)}),
    "blockworld": (BLOCKS, {
        "problem1.pddl": blocks_problem("(on-table b1) (on-table b2) (on b3 b1) (clear b2) (clear b3)",
                                        "(on b1 b2) (on b2 b3)"),
        "problem10.pddl": blocks_problem("(on-table b1) (on b2 b1) (clear b2)", "(on b1 b2)", ("b1", "b2")),
        "problem2.pddl": blocks_problem("(on-table b1) (on-table b2) (on-table b3) (clear b1) (clear b2) (clear b3)",
                                        "(on b3 b2) (on b1 b3)")}),
    "barman": (BAR, {"p01.pddl": "(define (problem bar-1) (:domain bar-fixture)\n  (:objects left right - hand "
                                 "shot1 - container tap - dispenser)\n  (:init (handempty left) (handempty right) "
                                 "(ontable shot1) (serves tap shot1))\n"
                                 "  (:goal (and (full shot1) (ontable shot1))))\n"}),
    "tyreworld": (TYRE, {"p01.pddl": "(define (problem tyre-1) (:domain tyre-fixture)\n  (:objects boot - container "
                                     "r1 - wheel)\n  (:init (closed boot) (in wrench boot) (in r1 boot))\n"
                                     "  (:goal (and (have wrench) (have r1) (closed boot))))\n"}),
}
N_PDDL = sum(len(problems) for _, problems in PDDL.values())  # 7 tasks: gripper 2, blockworld 3, barman 1, tyre 1


# COVE compiled once with Debian's inform6 6.41 (library 6.12), for a machine without the compiler: the README's
# test command must pass on a fresh machine; CI (.ci/run installs the compiler) compiles COVE at test time
COVE_Z5 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "cove.z5")


def compile_game(source, out, prebuilt=None):
    """Compile Inform 6 source to a Z-machine v5 story file with Debian's inform6 (apt-get install
    inform6-compiler inform6-library); without the compiler, copy `prebuilt` (the same source compiled), else an
    error naming the install line."""
    inform = shutil.which("inform6") or shutil.which("inform")
    library = "/usr/share/inform6/library"
    if inform is None or not os.path.isdir(library):
        if prebuilt is not None:
            return shutil.copyfile(prebuilt, out)
        raise RuntimeError("the Jericho tests compile their game with Inform 6: "
                           "apt-get install -y inform6-compiler inform6-library")
    src = out + ".inf"
    with open(src, "w") as f:
        f.write(source)
    run = subprocess.run([inform, f"+{library}", "-v5", src, out], capture_output=True, text=True, timeout=60)
    if run.returncode != 0 or not os.path.exists(out):
        raise RuntimeError(f"inform6 failed on {src}: {run.stdout[-800:]}{run.stderr[-800:]}")
    os.remove(src)
    return out


def write_jsonl(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)


def make(tmp, jericho=True, pddl=True):
    """tmp/AgentBoard/data in AgentBoard's layout (with the code files beside it); returns the data folder."""
    root = os.path.join(str(tmp), "AgentBoard")
    data = os.path.join(root, "data")
    os.makedirs(data, exist_ok=True)
    if jericho:
        games = os.path.join(data, "jericho", "z-machine-games-master", "jericho-game-suite")
        os.makedirs(games, exist_ok=True)
        story = compile_game(COVE, os.path.join(games, "905.z5"), prebuilt=COVE_Z5)
        shutil.copyfile(story, os.path.join(games, "acorncourt.z5"))
        write_jsonl(os.path.join(data, "jericho", "test.jsonl"), JERICHO_LABELS)
        code = os.path.join(root, "agentboard", "environment")
        os.makedirs(code, exist_ok=True)
        with open(os.path.join(code, "jericho_env.py"), "w") as f:
            f.write(JERICHO_TABLES)
    if pddl:
        folder = os.path.join(root, "agentboard", "environment", "pddl_env", "pddlgym", "pddl")
        for game, (domain, problems) in PDDL.items():
            os.makedirs(os.path.join(folder, game), exist_ok=True)
            with open(os.path.join(folder, game + ".pddl"), "w") as f:
                f.write(domain)
            for name, text in problems.items():
                with open(os.path.join(folder, game, name), "w") as f:
                    f.write(text)
        write_jsonl(os.path.join(data, "pddl", "test.jsonl"),
                    [{"id": i, "difficulty": "easy" if i % 2 else "hard"} for i in range(N_PDDL)])
    return data
