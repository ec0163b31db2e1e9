"""BabyAI as AgentGym serves it, in process: minigrid's BabyAI levels behind AgentGym's text view and
high-level actions; its scripted expert is in envs/babyai_expert.py.

    from envs.babyai import BabyAIEnv
    env = BabyAIEnv()
    obs = env.reset(7)                       # task 7 = level 8 (GoToSeqS5R2), seed 0
    while True:
        turn = env.expert_turn()             # "Thought:\n...\n\nAction:\ngo to red ball 1"
        obs, reward, done = env.step(turn)
        if done: break

What AgentGym does (agentenv-babyai, environment.py), and so what this file does:
- task id i -> level LEVELS[i % 40] reset with seed i // 40. Any i >= 0 is a task; task_ids() gives 40 seeds
  per level (ids 0..1599).
- the observation is the agent's 7x7 egocentric view in words: the visible objects sorted by Manhattan
  distance ("There is a red ball 1 2 steps in front of you and 1 steps to your right."), the nearest wall or box
  straight ahead, what the agent carries, and then the list of high-level actions valid right now:
  'Available actions: ["turn left", "turn right", "move forward", "pickup red ball 1", "go to red ball 1", ...]'.
  Note the action is spelled "pickup", not "pick up" as the instruction prompt says; like AgentGym we accept
  only the spellings listed.
- a high-level action is a list of primitive minigrid actions found by a breadth-first search inside the view;
  they run one by one and stop at the first one that leaves the view unchanged (bumping into something).
- reward: minigrid's 1 - 0.9 * steps / max_steps on success, else 0. AgentGym ends the episode only when that
  reward is > 0.5 (a late success keeps the episode open), and what its client reports is the running sum of
  the per-round rewards ("score"); we return that sum, so rewards here equal AgentGym's, quirks included.
- invalid actions get AgentGym's error text ("The action is not recognized. Please check valid actions." or a
  specific reason) and cost a round; the text after the first "Action:" is the action, as in AgentGym's client.

The scripted expert (expert_turn) lives in envs/babyai_expert.py, which plans on minigrid's BabyAIBot and
imports this module; this one loads it only when an expert turn is asked for.

minigrid 3.2.0 is used as is, with one exception: AgentGym's server (minigrid < 2.5) builds level 3,
BabyAI-GoToObjS6-v0, from that minigrid's registration, which is GoToObj(room_size=4) despite its name; minigrid
3.2.0 refuses -v0 and registers only -v1 (room size 6, another level). So level 3 is built as GoToObj(room_size=4)
here (OLD_REGISTRATIONS), which gives AgentGym's layouts seed for seed.
Like AgentGym's server, the text view is computed from the observation minigrid returned (reset's, then each
step's), not regenerated: on PutNextS7N4Carrying reset() returns the view from before the agent is handed the
object it carries, and that is what AgentGym describes.
"""
import contextlib
import io
import threading
import warnings
from collections import deque, namedtuple

import numpy as np

from envs import protocol
from envs.base import Env

INSTRUCTION = protocol.INSTRUCTION["babyai"]

LEVELS = [  # AgentGym's all_levels[1..40]; task id i plays LEVELS[i % 40]
    "BabyAI-GoToRedBallGrey-v0", "BabyAI-GoToRedBall-v0", "BabyAI-GoToRedBallNoDists-v0", "BabyAI-GoToObjS6-v0",
    "BabyAI-GoToLocalS8N7-v0", "BabyAI-GoToObjMazeS7-v0", "BabyAI-GoToImpUnlock-v0", "BabyAI-GoToSeqS5R2-v0",
    "BabyAI-GoToRedBlueBall-v0", "BabyAI-GoToDoor-v0", "BabyAI-GoToObjDoor-v0", "BabyAI-Open-v0",
    "BabyAI-OpenRedDoor-v0", "BabyAI-OpenDoorLoc-v0", "BabyAI-OpenRedBlueDoorsDebug-v0",
    "BabyAI-OpenDoorsOrderN4Debug-v0", "BabyAI-Pickup-v0", "BabyAI-UnblockPickup-v0", "BabyAI-PickupLoc-v0",
    "BabyAI-PickupDistDebug-v0", "BabyAI-PickupAbove-v0", "BabyAI-PutNextLocalS6N4-v0",
    "BabyAI-PutNextS7N4Carrying-v0", "BabyAI-Unlock-v0", "BabyAI-UnlockLocalDist-v0", "BabyAI-KeyInBox-v0",
    "BabyAI-UnlockPickupDist-v0", "BabyAI-BlockedUnlockPickup-v0", "BabyAI-UnlockToUnlock-v0",
    "BabyAI-ActionObjDoor-v0", "BabyAI-FindObjS7-v0", "BabyAI-KeyCorridorS6R3-v0", "BabyAI-OneRoomS20-v0",
    "BabyAI-MoveTwoAcrossS8N9-v0", "BabyAI-SynthS5R2-v0", "BabyAI-SynthLoc-v0", "BabyAI-SynthSeq-v0",
    "BabyAI-MiniBossLevel-v0", "BabyAI-BossLevel-v0", "BabyAI-BossLevelNoUnlock-v0",
]
# minigrid < 2.5 registrations that minigrid 3 changed: AgentGym's level name -> (entry point class, kwargs)
OLD_REGISTRATIONS = {"BabyAI-GoToObjS6-v0": ("GoToObj", {"room_size": 4})}
SEEDS_PER_LEVEL = 40  # task_ids() = range(40 * 40); larger ids work too (seed = id // 40)


LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE = 0, 1, 2, 3, 4, 5
DIR_TO_VEC = [(1, 0), (0, 1), (-1, 0), (0, -1)]
_QUIET = threading.Lock()
OBJECT_NAMES = {4: "door", 5: "key", 6: "ball", 7: "box", 8: "goal", 9: "lava", 2: "wall"}
COLOR_NAMES = ["red", "green", "blue", "purple", "yellow", "grey"]
DOOR_STATES = ["open", "closed", "locked"]
BLOCKING_WORDS = ("wall", "box", "lava", "ball", "key")  # AgentGym's path search walks around these


def _blocks(name):
    return any(w in name for w in BLOCKING_WORDS)


def _find_path(start, start_dir, target, blocked, xs, ys, arrive):
    """Primitive actions (forward/left/right) from (start, start_dir) until the agent stands on `target`
    (arrive) or faces it (not arrive); None if unreachable inside the view window xs x ys.
    Mirrors AgentGym's search exactly, tie-breaking included, so action lists match theirs: states are marked
    visited when popped, and a later push of a not-yet-popped state overwrites its parent."""
    queue, parent, popped = deque([(start, start_dir)]), {}, set()
    while queue:
        pos, d = queue.popleft()
        popped.add((pos, d))
        if arrive:
            reached = pos == target
        else:
            reached = (target[0] - pos[0], target[1] - pos[1]) == DIR_TO_VEC[d]
        if reached:
            path, node = [], (pos, d)
            while node != (start, start_dir):
                node, a = parent[node]
                path.append(a)
            return path[::-1]
        for a in (FORWARD, LEFT, RIGHT):
            if a == FORWARD:
                nxt = ((pos[0] + DIR_TO_VEC[d][0], pos[1] + DIR_TO_VEC[d][1]), d)
            else:
                nxt = (pos, (d - 1) % 4 if a == LEFT else (d + 1) % 4)
            p = nxt[0]
            if p[0] not in xs or p[1] not in ys or nxt in popped or p in blocked:
                continue
            queue.append(nxt)
            parent[nxt] = ((pos, d), a)
    return None


# What the agent sees, in the env's absolute coordinates: its cell `pos`, heading `d` with the forward and right unit
# vectors `f` and `r`, AgentGym's search window `xs` x `ys`, the visible objects `objs` as (name, cell, Manhattan
# distance) nearest first, the walls and boxes straight ahead `barriers` as (kind, distance) nearest first, the cells
# `blocked` for the path search, and what the agent is `carrying` (a minigrid object or None).
View = namedtuple("View", "pos d f r xs ys objs barriers blocked carrying")


def see(env, obs=None):
    """The View of the minigrid observation `obs` (None: the current state's), with the agent's position, heading
    and load taken from the env as AgentGym does."""
    u = env.unwrapped
    image = (u.gen_obs() if obs is None else obs)["image"]
    vs, d = u.agent_view_size, u.agent_dir
    pos = (int(u.agent_pos[0]), int(u.agent_pos[1]))
    f, r = DIR_TO_VEC[d], DIR_TO_VEC[(d + 1) % 4]
    top_left = (pos[0] + f[0] * (vs - 1) - r[0] * (vs // 2), pos[1] + f[1] * (vs - 1) - r[1] * (vs // 2))
    # AgentGym's search window (one cell behind the agent for some headings: kept as they have it)
    ranges = []
    for k in (0, 1):
        border = top_left[k] + vs * (r[k] - f[k])
        ranges.append(range(border, top_left[k] + 1) if border < top_left[k] else range(top_left[k], border))
    xs, ys = ranges

    objs, barriers = [], []
    for vj in range(vs):
        for vi in range(vs):
            ai, aj = top_left[0] - f[0] * vj + r[0] * vi, top_left[1] - f[1] * vj + r[1] * vi
            dist = abs(pos[0] - ai) + abs(pos[1] - aj)
            if ai < 0 or aj < 0 or dist == 0:  # dist 0 is the agent's cell, where the view shows what it carries
                continue
            t, c, s = (int(v) for v in image[vi, vj])
            if t not in OBJECT_NAMES:
                continue
            kind = OBJECT_NAMES[t]
            name = f"{COLOR_NAMES[c]} {DOOR_STATES[s]} door" if kind == "door" else f"{COLOR_NAMES[c]} {kind}"
            objs.append((name, (ai, aj), dist))
            rel = (ai - pos[0], aj - pos[1])
            if kind in ("box", "wall") and f[0] * rel[1] - f[1] * rel[0] == 0:
                barriers.append((kind, f[0] * rel[0] + f[1] * rel[1]))
    objs.sort(key=lambda o: o[2])  # stable: ties keep scan order, as in AgentGym
    barriers.sort(key=lambda b: b[1])
    blocked = {p for name, p, _ in objs if _blocks(name)}
    return View(pos, d, f, r, xs, ys, objs, barriers, blocked, u.carrying)


def _path(view, target, arrive):
    """_find_path from where the agent stands, inside its view."""
    return _find_path(view.pos, view.d, target, view.blocked, view.xs, view.ys, arrive)


def observation_text(view):
    """AgentGym's words for the view: each visible object but walls with its steps ahead and to the side, the
    nearest wall or box straight ahead, and what the agent carries."""
    pos, f, r = view.pos, view.f, view.r
    if view.objs:
        text, seen = "In front of you in this room, you can see several objects: ", {}
        for name, p, _ in view.objs:
            if "wall" in name:
                continue
            rel = (p[0] - pos[0], p[1] - pos[1])
            front, right = f[0] * rel[0] + f[1] * rel[1], r[0] * rel[0] + r[1] * rel[1]
            if right == 0:
                where = f"right in front of you {front} steps away. "
            elif right > 0:
                where = f"{front} steps in front of you and {right} steps to your right. "
            else:
                where = f"{front} steps in front of you and {-right} steps to your left. "
            seen[name] = seen.get(name, 0) + 1
            text += f"There is a {name} {seen[name]} {where} "
    else:
        text = "You cannot see any objects within sight."
    text += "The room has walls around you. "
    if view.barriers:
        text += f"You are facing a {view.barriers[0][0]} {view.barriers[0][1]} steps away. "
    carrying = view.carrying
    text += f"You are carrying a {carrying.color} {carrying.type}." if carrying else "You are not carrying anything."
    return text


def available_actions(view):
    """The high-level actions valid in this view, {name: [primitive actions]} in AgentGym's order (the order of
    its "Available actions" list), and AgentGym's error text for each it refuses, {name: message}."""
    actions, errors = {"turn left": [LEFT], "turn right": [RIGHT]}, {}
    if not view.barriers or view.barriers[0][1] > 1:
        actions["move forward"] = [FORWARD]
    else:
        errors["move forward"] = "There is a barrier in front of you, you can't move forward."
    # the groups in AgentGym's order; update() places and overwrites names as one pass assigning them would
    for group in (pickup_and_drop, door_actions, go_to_actions):
        more_actions, more_errors = group(view)
        actions.update(more_actions)
        errors.update(more_errors)
    actions["check available actions"] = []
    return actions, errors


def pickup_and_drop(view):
    """'pickup X k' for each object the agent can reach with empty hands, else 'drop' if the cell ahead is free."""
    actions, errors, carrying = {}, {}, view.carrying
    if carrying is None:
        count = {}
        for name, p, _ in view.objs:
            if "wall" in name or "door" in name or "goal" in name:
                continue
            steps = _path(view, p, False)
            if steps is not None:  # numbering counts only reachable objects, as in AgentGym
                count[name] = count.get(name, 0) + 1
                actions[f"pickup {name} {count[name]}"] = steps + [PICKUP]
            else:
                k = count.get(name, 0) + 1
                errors[f"pickup {name} {k}"] = f"You cannot pickup {name} {k}, as there is no path leading to it."
        errors["drop"] = "You cannot drop the object, as you are not carrying anything."
    else:
        front_cell = (view.pos[0] + view.f[0], view.pos[1] + view.f[1])
        if any(p == front_cell and _blocks(name) for name, p, _ in view.objs):
            errors["drop"] = "You cannot drop the object, as there is already an object in front of you."
        else:
            actions["drop"] = [DROP]
    return actions, errors


def door_actions(view):
    """'go through' each reachable open door, 'toggle and go through' each closed door (and locked door, with the
    key of its colour), and 'toggle' when a door is right ahead."""
    actions, errors, carrying, doors = {}, {}, view.carrying, {}
    for name, p, _ in view.objs:
        if "door" not in name:
            continue
        doors[name] = doors.get(name, 0) + 1
        label = f"{name} {doors[name]}"
        if "open door" in name:
            steps = _path(view, p, True)
            if steps is not None:
                actions[f"go through {label}"] = steps
            else:
                errors[f"go through {label}"] = f"You cannot go through {label}, as there is no path leading to it."
            continue
        if "locked door" in name:
            if carrying is None or carrying.type != "key":
                errors[f"toggle and go through {label}"] = (
                    f"You cannot toggle and go through {label}, as you are not carrying a key.")
                continue
            if carrying.color != name.split(" ")[0]:
                errors[f"toggle and go through {label}"] = (
                    f"You cannot toggle and go through {label}, as the color of the key you are carrying does "
                    "not match the color of door.")
                continue
        steps = _path(view, p, False)
        if steps is not None:
            actions[f"toggle and go through {label}"] = steps + [TOGGLE, FORWARD]
        else:  # AgentGym prints its whole door counter here; kept so error texts match
            errors[f"toggle and go through {label}"] = (
                f"You cannot toggle and go through {name} {doors}, as there is no path leading to it.")
        if steps == []:
            actions["toggle"] = [TOGGLE]
        if "closed door" in name:
            errors[f"go through {label}"] = (f"You cannot go through {label}, as it is closed. "
                                             f"You should toggle it first.")
    return actions, errors


def go_to_actions(view):
    """'go to goal' onto the goal square, then 'go to X k' to face each reachable object (doors included)."""
    actions, errors = {}, {}
    for name, p, _ in view.objs:
        if "goal" in name:
            steps = _path(view, p, True)
            if steps is not None:
                actions["go to goal"] = steps
            else:
                errors["go to goal"] = "You cannot go to the goal, as there is no path leading to it."
    count = {}
    for name, p, _ in view.objs:
        if "wall" in name or "goal" in name:
            continue
        steps = _path(view, p, False)
        if steps is not None:
            count[name] = count.get(name, 0) + 1
            actions[f"go to {name} {count[name]}"] = steps
        else:
            k = count.get(name, 0) + 1
            errors[f"go to {name} {k}"] = f"You cannot go to {name} {k}, as there is no path leading to it."
    return actions, errors


def describe(env, obs=None):
    """AgentGym's text view (postprocess_obs) of the minigrid observation `obs` that reset/step returned (None:
    the current state's), with the agent's position, heading and load taken from the env as AgentGym does.
    Returns (description, actions: {name: [primitive actions]} in AgentGym's order, errors: {name: message})."""
    view = see(env, obs)
    actions, errors = available_actions(view)
    return observation_text(view), actions, errors


def run_primitives(env, steps, before=None):
    """Execute primitive actions, stopping after the first whose view equals the one before it (AgentGym's check
    that a step did something). `before` is the view AgentGym compares the first step with: the image of the
    last observation it kept (None: the current state's). Returns minigrid's (reward, terminated, obs) of the
    last step executed (obs None when `steps` is empty)."""
    u = env.unwrapped
    before = u.gen_obs()["image"] if before is None else before
    reward, terminated, obs = 0.0, False, None
    for a in steps:
        obs, reward, terminated, _, _ = u.step(a)
        if np.array_equal(obs["image"], before):
            break
        before = obs["image"]
    return float(reward), bool(terminated), obs


class BabyAIEnv(Env):
    name, split, max_rounds, score = "babyai", "held-in", 20, "mean"  # mean reward x100, as AgentGym and Table 1

    @staticmethod
    def success(reward):
        """AgentGym's evaluator counts `reward == 1` for every env, which can never hold on BabyAI: minigrid pays
        1 - 0.9 * steps / max_steps, and only on completion. So a BabyAI task counts as solved when its reward is
        > 0 (AgentGym, and the paper's Table 1, report BabyAI's mean reward instead; evaluate.py --report does
        the same)."""
        return float(reward) > 0.0

    def __init__(self):
        import gymnasium
        import minigrid  # noqa: F401  (registers the BabyAI levels with gymnasium)
        self._gym = gymnasium
        self._levels = {}
        self.env = self._expert = None

    def task_ids(self):
        return range(len(LEVELS) * SEEDS_PER_LEVEL)

    def instruction(self):
        return INSTRUCTION

    def _level(self, name):
        if name not in self._levels:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if name in OLD_REGISTRATIONS:  # what AgentGym's minigrid registered under this name
                    import minigrid.envs.babyai as levels
                    cls, kwargs = OLD_REGISTRATIONS[name]
                    self._levels[name] = getattr(levels, cls)(**kwargs)
                else:
                    self._levels[name] = self._gym.make(name).unwrapped
        return self._levels[name]

    def reset(self, task_id):
        if int(task_id) < 0:
            raise ValueError(f"babyai: task id must be >= 0, got {task_id}")
        self.task_id = int(task_id)
        self.level = LEVELS[self.task_id % len(LEVELS)]
        self.env = self._level(self.level)
        # minigrid prints "Sampling rejected: ..." while generating; redirecting stdout swaps sys.stdout for the
        # whole process, so resets in concurrent threads take turns (else one could restore the other's sink)
        with _QUIET, contextlib.redirect_stdout(io.StringIO()):
            obs, _ = self.env.reset(seed=self.task_id // len(LEVELS))
        # AgentGym rewrites the sequencing words of the mission into "and"
        self.goal = self.env.mission.replace("then", "and").replace("after you", "and")
        self.reward, self.score, self.done = 0.0, 0.0, False
        self.text, self.actions, self.errors = describe(self.env, obs)
        self.view = obs["image"]  # AgentGym's obs_2d: what the next primitive step is compared with
        self._expert = None  # a new episode: the expert plans afresh
        return f"Your goal: {self.goal}\n{self.text}" + self._action_list()

    def _action_list(self):
        return "\nAvailable actions: [" + ", ".join(f'"{a}"' for a in self.actions) + "]"

    def step(self, text):
        if self.env is None:
            raise RuntimeError("babyai: step() before reset()")
        if self.done:
            return "The task with environment has finished.", self.score, True
        action = self.parse_action(text).lower().strip()
        if "check" in action:
            obs = "You can take the following actions: " + ", ".join(self.actions)
        elif action == "":
            obs = "No change in state."
        elif action not in self.actions:
            obs = self.errors.get(action, "The action is not recognized. Please check valid actions.")
        elif not self.actions[action]:  # e.g. "go to X" while facing X: nothing to do, the reward is kept
            obs = "No change in state."
        else:
            obs = self._execute(self.actions[action])
        self.score += self.reward  # AgentGym's score: sum of the per-round rewards
        return obs + self._action_list(), self.score, self.done

    def _execute(self, steps):
        reward, done, last = run_primitives(self.env, steps, self.view)
        self.reward, self.view = reward, last["image"]
        self.text, self.actions, self.errors = describe(self.env, last)
        obs = self.text + ("\n The task is completed." if done else "")
        if done and self.reward <= 0.5:  # AgentGym: a success this late (or a failure) does not end the episode
            done = False
        if self.reward == 1 and not done:
            done, obs = True, obs + "\n The task is completed."
        self.done = done
        return obs

    def expert_turn(self):
        """The scripted expert's next turn (envs/babyai_expert.py, loaded on first use)."""
        if self._expert is None:
            from envs.babyai_expert import BabyAIExpert
            self._expert = BabyAIExpert(self)
        return self._expert.turn()

    def close(self):
        for env in self._levels.values():
            env.close()
        self._levels, self.env = {}, None
