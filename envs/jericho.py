"""Jericho (AgentBoard, Ma et al. 2024): interactive-fiction games, held out in the paper, scored by progress rate.
The games, goals and subgoals are AgentBoard's, read from its data folder (envs/agentboard.py); the games run in
the `jericho` package's FrotzEnv (pip install jericho; it builds frotz from C).

    python evaluate.py --env jericho --agentboard-data AgentBoard/data --policy expert ...   # or ATLAS_AGENTBOARD_DATA

Tasks: task id i is line i of data/jericho/test.jsonl, AgentBoard's label file, whose game is the line's "game_name"
(else the i-th of AgentBoard's list, GAMES: its eval config's order) and whose story file is
jericho/z-machine-games-master/jericho-game-suite/<game>.z5 (or .z8). The goal and the first observation are the
line's "goal" / "init_obs" when it has them, else AgentBoard's handwritten tables (game_goals, game_init_obs in its
agentboard/environment/jericho_env.py, read as data), else AgentBoard's own placeholder "Not written yet." (what
AgentBoard plays for a game its tables lack: its list says "huntdark", its tables "darkhunt").

Progress rate, as AgentBoard computes it: the line's "subgoals" are observation texts; after every game step the
observation (AgentBoard's clean-up: newlines to spaces, runs of spaces to one, "[Your score ...]" removed; we also
trim the ends) is compared with the subgoals not yet reached, in order, with everything but letters, digits and
whitespace removed from both and case kept; the first one contained in it counts (at most one a step) and is struck
off. Reward =
progress = subgoals reached / subgoals; success = all reached (reward 1), which ends the episode, as does the game
ending. The action is AgentGym's rule (the text after the first "Action:") and then AgentBoard's clean-up (up to the
first "," and then the first ".", at most 20 words); "check valid actions" (any action with "check" and "action"
in it) answers Jericho's valid actions and the special action, and moves nothing. 30 rounds (AgentBoard's
max_num_steps for its main results).

Our ReAct protocol: the instruction (INSTRUCTION), the ack, then the first observation "Goal: <goal>\\n
Observation: <first observation>", then one "Thought: ...\\nAction: ..." turn a round. What AgentBoard does
differently: its VanillaAgent writes the goal into its own prompt with in-context examples, keeps a memory of the
last turns and answers with one action line; ours is this project's instruction and the whole conversation
(evaluate.py's context rule). Valid actions are listed with Jericho's serial filter (AgentBoard: the parallel one;
the same list).

The expert (for tests and fixtures): a label line may carry "walkthrough", the actions that reach every subgoal;
AgentBoard's games use Jericho's own walkthrough when the line has none. Without either there is no expert.
"""
import ast
import glob
import os
import re
import warnings

from envs import agentboard, protocol
from envs.base import Env

MAX_ROUNDS = 30  # AgentBoard's max_num_steps (eval_configs/main_results_all_tasks.yaml)
# AgentBoard's Jericho games in its eval config's order: label line i is game i when the line does not name it
GAMES = ("905", "acorncourt", "afflicted", "balances", "dragon", "jewel", "library", "omniquest", "reverb",
         "snacktime", "zenon", "zork1", "zork2", "zork3", "detective", "night", "pentari", "weapon", "huntdark",
         "loose")
PLACEHOLDER = "Not written yet."  # AgentBoard's goal and first observation for a game missing from its tables
GAME_DIR = os.path.join("jericho", "z-machine-games-master", "jericho-game-suite")
CHECK = "check valid actions"

INSTRUCTION = """\
You are playing an interactive fiction game. You explore its world by typing short text commands, as in any text \
adventure: "look", "inventory", "north", "take lamp", "open the door", "put coin in slot", "ask man about key". \
You are given a goal; the game's own rules decide what happens. You can also use "check valid actions" to list \
the commands that change something now.

Every round I give you an observation: the goal and where you are first, then the game's answer to your last \
command. Answer in the following format:

Thought:
<your reasoning>

Action:
<one command>"""


def clean_action(action):
    """AgentBoard's clean-up of an action (its EvalJericho.parse_action): up to the first comma, then up to the
    first full stop, at most 20 space-separated words (a longer command overflows frotz's buffer)."""
    action = action.split(",")[0].split(".")[0]
    return " ".join(action.split(" ")[:20])


def clean_observation(text):
    """AgentBoard's clean-up of a game answer: newlines to spaces, runs of spaces to one, the score notice out."""
    text = re.sub(r" {2,}", " ", text.replace("\n", " "))
    return re.sub(r"\[Your score .*?\]", "", text).strip()  # the ends trimmed (ours): the same matches


def letters(text):
    """What AgentBoard compares: letters, digits and whitespace only."""
    return re.sub(r"[^a-zA-Z0-9\s]", "", text)


def agentboard_tables(code_root):
    """{"game_goals": {...}, "game_init_obs": {...}} from AgentBoard's jericho_env.py (literal dicts, read with ast,
    never imported), or None when the clone is not there."""
    path = os.path.join(code_root, "agentboard", "environment", "jericho_env.py")
    if not os.path.exists(path):
        return None
    tables = {}
    for node in ast.parse(open(path, encoding="utf-8").read(), path).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in ("game_goals", "game_init_obs"):
            tables[node.targets[0].id] = ast.literal_eval(node.value)
    return tables


_TASKS = {}


def tasks():
    """[{game, file, goal, init_obs, subgoals, difficulty, walkthrough}, ...] in task-id order, from the data folder
    (cached per folder). One-line ValueError naming what is missing and where AgentBoard publishes it."""
    data, code = agentboard.folders("jericho")
    if data in _TASKS:
        return _TASKS[data]
    where = f"AgentBoard's data, {agentboard.DATA_URL}"
    labels_path = agentboard.need("jericho", os.path.join(data, "jericho", "test.jsonl"), "Jericho's labels", where)
    game_dir = agentboard.need("jericho", os.path.join(data, GAME_DIR), "Jericho's game files", where)
    labels = agentboard.read_labels("jericho", labels_path, ("subgoals", "difficulty"))
    tables = agentboard_tables(code)
    if tables is None and not all("goal" in rec for rec in labels):
        raise ValueError(f"jericho: {labels_path} has no \"goal\" on every line and "
                         f"{os.path.join(code, 'agentboard', 'environment', 'jericho_env.py')} (AgentBoard's goal "
                         f"table) is not there: put the data folder inside a clone of {agentboard.CODE_URL}")
    out = []
    for n, rec in enumerate(labels):
        game = rec.get("game_name") or (GAMES[n] if n < len(GAMES) else None)
        if game is None:
            raise ValueError(f"{labels_path}: line {n + 1}: no \"game_name\" and AgentBoard's list has "
                             f"{len(GAMES)} games")
        subgoals = rec["subgoals"]
        if not isinstance(subgoals, list) or not subgoals or not all(isinstance(s, str) for s in subgoals):
            raise ValueError(f"{labels_path}: line {n + 1}: \"subgoals\" must be a non-empty list of strings")
        files = sorted(glob.glob(os.path.join(game_dir, glob.escape(game) + ".z[0-9]")))
        if not files:
            raise ValueError(f"jericho: {os.path.join(game_dir, game)}.z5 not found: the story file of label line "
                             f"{n + 1} ({where})")
        tables_ = tables or {}
        out.append({"game": game, "file": files[0], "subgoals": list(subgoals), "difficulty": rec["difficulty"],
                    "goal": rec.get("goal") or tables_.get("game_goals", {}).get(game, PLACEHOLDER),
                    "init_obs": rec.get("init_obs") or tables_.get("game_init_obs", {}).get(game, PLACEHOLDER),
                    "walkthrough": rec.get("walkthrough")})
    _TASKS[data] = out
    return out


class JerichoEnv(Env):
    name, split, score, max_rounds = "jericho", "held-out", "progress", MAX_ROUNDS

    @staticmethod
    def parse_action(text):
        """AgentGym's rule (the text after the first "Action:"), then AgentBoard's clean-up."""
        return clean_action(protocol.first_action(text))

    def __init__(self):
        tasks()  # no data folder, no labels, no games: one line, before any episode
        import importlib.util
        if importlib.util.find_spec("jericho") is None:
            raise ValueError("jericho: the games run in the jericho package: pip install jericho")
        self.game, self.done, self.progress, self._file = None, True, 0.0, None

    def task_ids(self):
        return range(len(tasks()))

    def instruction(self):
        return INSTRUCTION

    def reset(self, task_id):
        self.task = agentboard.task("jericho", tasks(), task_id)
        if self._file != self.task["file"]:
            self._open(self.task["file"])
        self.game.reset()
        self.left = list(self.task["subgoals"])
        self.progress, self.done, self.steps = 0.0, False, 0
        return f"Goal: {self.task['goal']}\nObservation: {self.task['init_obs']}"

    def _open(self, path):
        from jericho import FrotzEnv
        if self.game is not None:
            self.game.close()
        with warnings.catch_warnings():  # a game outside Jericho's list plays; only its score and hints are off
            warnings.simplefilter("ignore")
            self.game = FrotzEnv(path)  # the seed of Jericho's walkthrough for the games it knows, as AgentBoard
        if self.game.is_fully_supported:
            import spacy.util
            if not spacy.util.is_package("en_core_web_sm"):  # Jericho's valid-action finder loads it (or downloads)
                raise ValueError("jericho: listing valid actions needs spaCy's en_core_web_sm: "
                                 "python -m spacy download en_core_web_sm")
        self._file = path

    def step(self, text):
        if self.done:
            return "The task has finished.", self.progress, True
        self.steps += 1
        action = self.parse_action(text)
        if "check" in action.lower() and "action" in action.lower():
            return "You can take the following actions: " + ", ".join(self.valid_actions() + [CHECK]), \
                self.progress, False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Jericho warns when it cuts an over-long command
            obs, _, game_over, _ = self.game.step(action)
        obs = clean_observation(obs)
        self.progress = self.reached(obs)
        self.done = self.progress == 1.0 or bool(game_over)
        return obs, self.progress, self.done

    def reached(self, obs):
        """The progress rate after observation `obs` (AgentBoard's rule: at most one subgoal a step)."""
        seen = letters(obs)
        for pattern in self.left:
            if letters(pattern) in seen:
                self.left.remove(pattern)
                break
        n = len(self.task["subgoals"])
        return (n - len(self.left)) / n

    def valid_actions(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a game Jericho does not know has none to list (AgentBoard: the same)
            return list(self.game.get_valid_actions(use_parallel=False))

    # ---- the expert
    def expert_turn(self):
        """The next action of the label line's walkthrough (else Jericho's own for the game), by round."""
        walk = self.task["walkthrough"]
        if walk is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                walk = self.game.get_walkthrough() or None
        if not walk:
            raise NotImplementedError(f"jericho: no walkthrough for {self.task['game']} (no expert)")
        if self.steps >= len(walk):
            return f"Thought:\nThe walkthrough is over; let me look around.\n\nAction:\n{CHECK}"
        left = len(self.left)
        return (f"Thought:\n{left} of {len(self.task['subgoals'])} subgoals still to reach; the walkthrough's next "
                f"command is {walk[self.steps]!r}.\n\nAction:\n{walk[self.steps]}")

    def close(self):
        self.done = True
        if self.game is not None:
            self.game.close()
            self.game, self._file = None, None
