"""The scripted BabyAI expert: picks, each round, one of the high-level actions AgentGym offers (envs/babyai.py).

    from envs.babyai import BabyAIEnv
    env = BabyAIEnv(); env.reset(37)
    turn = env.expert_turn()                 # "Thought:\n...\n\nAction:\ngo to red ball 1" (calls BabyAIExpert)

How it plans (make_plan). minigrid's BabyAIBot plays the level to the end on a copy, through BabyAIBot.replan
only: once per order of every "A and B" in the mission with the whole map known (`vis_mask` all seen) and every
closed door the mission does not ask to open already open (the bot, knowing the map, finds no path through closed
doors, and the expert walks through them with "toggle and go through" anyway), and once exploring as it normally
does; the cheapest run (plan_cost) is kept. The run is cut into segments at every step that changes the level's
state: what lies where (a pickup, a drop, a locked door unlocked, a door the mission names opened), what the
agent carries, or how far the mission got (the `a_done`/`b_done` flags of a sequenced instruction, e.g. when
"go to the red ball, then ..." sees the red ball). Each segment ends with the agent facing one cell and, for a
pickup/drop/toggle, acting on it; within a segment only the agent's position and heading differ, so which way it
walks does not matter. The bot's "pick the key up, put it down to clear the way, come back for it" detours are cut
out (_skip_detours). When the bot cannot finish while the agent carries something (PutNextS7N4Carrying starts
with the object in hand), the plan starts by putting it down.

How it acts (BabyAIExpert.action). Every offered action is tried on the level (in place for moves, on a copy
otherwise). An action is worth (the segment it lands in, minus the primitive moves from where it lands to facing
that segment's cell: a breadth-first search over the whole grid); an action that finishes the task wins; one that
lands off the plan (a wrong object picked up) is never taken, except a drop that frees the hands as the plan wants,
elsewhere than the bot's spot (the bot then plans again). The six best are looked at one round further, a second
round costing ROUND_COST moves, so a turn that brings a door into view can win. One "go to", "pickup", "go through"
or "toggle and go through" covers many primitive steps. When the state leaves the plan (another policy acted, or
AgentGym's path ran into something) the bot plans again from there.

Measured with `evaluate.py --env babyai --policy expert --tasks 0:800` (seeds 0-19 of every level): see
data/README.md (761/800; 761 of the 780 ids of solvable levels). What fails: KeyInBox always (UNSOLVABLE); seeds
where BabyAIBot itself goes round in circles from every start we give it (6 of 20 UnlockToUnlock, 3 of 20
GoToImpUnlock: no plan, the expert only turns); a few seeds of the long levels (Synth, MiniBoss, Boss: plans of
10+ segments across rooms need more than 20 rounds of AgentGym's actions, or the expert dithers between drops).
Only public minigrid API is used (BabyAIBot.replan and vis_mask, the level's step, grid, carrying and instrs), never
the bot's private helpers.
"""
import copy
from collections import deque

from envs.babyai import DIR_TO_VEC, DROP, FORWARD, LEFT, PICKUP, RIGHT, TOGGLE, describe, run_primitives

# Levels (task_id % 40) that AgentGym's actions cannot solve, and why.
UNSOLVABLE = {
    25: "KeyInBox: the key is inside a box; minigrid opens a box only by toggling it, and AgentGym offers "
        "\"toggle\" only when the agent faces a door",
}
PLAN_STEPS = 400  # a bound on the bot's primitive steps when it plays a level to the end on a copy
FINISH = 10 ** 6  # the value of an action that completes the task


def instr_nodes(instr):
    yield instr
    for sub in (getattr(instr, "instr_a", None), getattr(instr, "instr_b", None)):
        if sub is not None:
            yield from instr_nodes(sub)


def open_targets(u):
    """The doors the mission asks to open (their open/closed state matters; other doors' does not)."""
    return {id(o) for n in instr_nodes(u.instrs) if type(n).__name__ == "OpenInstr" for o in n.desc.obj_set}


def signature(u):
    """Everything but the agent's position and heading: objects and door states, the load, mission progress.
    Whether a door is open counts only for the doors the mission asks to open: the expert walks through any
    other closed door with "toggle and go through"."""
    targets = open_targets(u)
    grid = tuple((i, c.type, c.color, getattr(c, "is_locked", None), id(c) in targets and c.is_open)
                 for i, c in enumerate(u.grid.grid) if c is not None and c.type != "wall")
    carry = (u.carrying.type, u.carrying.color) if u.carrying else None
    progress = tuple((getattr(n, "a_done", None) == "success", getattr(n, "b_done", None) == "success")
                     for n in instr_nodes(u.instrs))
    return grid, carry, progress


def pose(u):
    return int(u.agent_pos[0]), int(u.agent_pos[1]), int(u.agent_dir)


def front(p):
    return p[0] + DIR_TO_VEC[p[2]][0], p[1] + DIR_TO_VEC[p[2]][1]


def clone(u):
    """A copy of the level to play on. Walls never change, so the copy shares them (20x faster on big grids)."""
    return copy.deepcopy(u, {id(c): c for c in u.grid.grid if c is not None and c.type == "wall"})


def simulate(u, steps, before):
    """Outcome of AgentGym running `steps` now, the level left as it was: (reward, terminated, level after).
    Moves and turns change only the agent, the step count and the instruction's bookkeeping, which are put back;
    a pickup, drop or toggle runs on a copy."""
    if any(a not in (LEFT, RIGHT, FORWARD) for a in steps):
        sim = clone(u)
        reward, terminated, _ = run_primitives(sim, steps, before)
        return reward, terminated, _Snapshot(signature(sim), pose(sim), sim)
    saved = (u.agent_pos, u.agent_dir, u.step_count, [(n, dict(n.__dict__)) for n in instr_nodes(u.instrs)])
    reward, terminated, _ = run_primitives(u, steps, before)
    after = _Snapshot(signature(u), pose(u), u)
    u.agent_pos, u.agent_dir, u.step_count, nodes = saved
    for node, attrs in nodes:
        node.__dict__.clear()
        node.__dict__.update(attrs)
    return reward, terminated, after


class _Snapshot:
    """What the expert needs of a level after a move: its signature, the agent's pose, and the grid (unchanged
    by a move, so the live one is shared)."""

    def __init__(self, sig, p, u):
        self.sig, self.pose, self.grid, self.width, self.height = sig, p, u.grid, u.width, u.height
        self.shut = open_targets(u)


def passable(grid, width, height, shut=()):
    """free(x, y) of a level's grid: empty cells and doors that are neither locked nor closed and in `shut`
    (ids of doors that must stay closed for now)."""
    def free(x, y):
        if not (0 <= x < width and 0 <= y < height):
            return False
        c = grid.get(x, y)
        return c is None or (c.type == "door" and not c.is_locked and (c.is_open or id(c) not in shut))
    return free


def passable_in(sig, grid, width, height):
    """free(x, y) of the state `sig` describes, on the walls of `grid`."""
    taken = {e[0] for e in sig[0] if e[1] != "door" or e[3]}

    def free(x, y):
        if not (0 <= x < width and 0 <= y < height) or y * width + x in taken:
            return False
        c = grid.get(x, y)
        return c is None or c.type != "wall"
    return free


def distances(free, cell):
    """Primitive moves from every pose (x, y, dir) to facing `cell`, walking on the cells where free(x, y)."""
    dist, queue = {}, deque()
    for d, (dx, dy) in enumerate(DIR_TO_VEC):
        p = (cell[0] - dx, cell[1] - dy, d)
        if free(p[0], p[1]):
            dist[p] = 0
            queue.append(p)
    while queue:  # backwards: which poses reach p in one move
        x, y, d = p = queue.popleft()
        dx, dy = DIR_TO_VEC[d]
        for q in ((x, y, (d + 1) % 4), (x, y, (d - 1) % 4), (x - dx, y - dy, d)):
            if q not in dist and free(q[0], q[1]):
                dist[q] = dist[p] + 1
                queue.append(q)
    return dist


class Segment:
    """A stretch of the bot's run with one signature, ending when the agent faces `cell` (and does `action`)."""

    def __init__(self, sig, cell, action, what, start=None):
        self.sig, self.cell, self.action, self.what, self.start = sig, cell, action, what, start


def make_plan(u):
    """The bot's run from the level's current state, cut into Segments; None if it does not finish.
    First with the whole map known and every closed door that the mission does not ask to open already open
    (the expert walks through closed doors with "toggle and go through" anyway, and the bot, knowing the map,
    would otherwise find no path through them), trying both orders of every "A and B" of the mission and keeping
    the cheapest run (plan_cost); and once as the bot plays normally, exploring, which sometimes clears fewer
    objects out of its way."""
    ands = [n for n in instr_nodes(u.instrs) if type(n).__name__ == "AndInstr"]
    runs = [_plan_from(u, True, [(mask >> i) & 1 for i in range(len(ands))]) for mask in range(2 ** len(ands))]
    runs.append(_plan_from(u, False, [0] * len(ands)))
    runs = [r for r in runs if r is not None]
    return min(runs, key=plan_cost)[0] if runs else None


def plan_cost(run):
    """About the rounds a run (segments, primitive steps) takes: an interaction or two per segment, and one round
    per few primitive steps of walking ("go to" covers a room)."""
    segments, steps = run
    return 2 * len(segments) + steps / 5


def _plan_from(u, known, swaps):
    """(segments, primitive steps) of one bot run, or None."""
    sim = clone(u)
    targets = open_targets(sim)
    for c in sim.grid.grid:
        if c is not None and c.type == "door" and not c.is_locked and id(c) not in targets:
            c.is_open = True
    run = _bot_run(sim, [], known, swaps)
    if run is None and u.carrying is not None:  # put the load down first, then let the bot start afresh
        sim = clone(u)
        start = pose(sim)
        for _ in range(4):
            if sim.grid.get(*front(pose(sim))) is None:
                break
            sim.step(LEFT)
        else:
            return None
        segment, _ = _segment_step(sim, DROP)
        segment.start = start
        run = _bot_run(sim, [segment], known, swaps)
    return run


def _what(u, cell, action):
    c = u.grid.get(*cell)
    name = f"{c.color} {c.type}" if c is not None else None
    if action == PICKUP:
        return ("pickup", name)
    if action == DROP:
        return ("drop", f"{u.carrying.color} {u.carrying.type}" if u.carrying else None)
    if action == TOGGLE:
        return ("open", name)
    return ("face", name)


def _segment_step(sim, action):
    """Take one primitive step on `sim`; returns (Segment ending with it or None, status)."""
    sig, p = signature(sim), pose(sim)
    what = _what(sim, front(p), action)
    _, reward, _, _, _ = sim.step(action)
    after = pose(sim)
    cell = front(after) if action in (LEFT, RIGHT, FORWARD) else front(p)
    if reward > 0:
        return Segment(sig, cell, action, _what(sim, cell, action) if action in (LEFT, RIGHT, FORWARD) else what), True
    if signature(sim) != sig:
        if action in (LEFT, RIGHT, FORWARD):
            what = _what(sim, cell, action)
        return Segment(sig, cell, action, what), False
    return None, False


class BoundedStack(list):
    """The bot's subgoal stack, refusing more than BUDGET pushes per replan(): on some levels (GoToImpUnlock,
    UnlockToUnlock) the bot's exploring subgoal and a "go next to" subgoal hand control back and forth forever
    inside replan(); this ends that run with an error instead (the plan then comes from another run)."""
    BUDGET = 200

    def __init__(self, items=()):
        super().__init__(items)
        self.budget = self.BUDGET

    def append(self, item):
        self.budget -= 1
        if self.budget < 0:
            raise RuntimeError("BabyAIBot is going round in circles")
        super().append(item)


def _bot_run(sim, segments, known, swaps):
    from minigrid.utils.baby_ai_bot import BabyAIBot
    ands = [n for n in instr_nodes(sim.instrs) if type(n).__name__ == "AndInstr"]
    try:
        for node, swap in zip(ands, swaps):  # the bot does "A and B" in the order of the instruction's tree
            if swap:
                node.instr_a, node.instr_b = node.instr_b, node.instr_a
        bot = BabyAIBot(sim)
    finally:
        for node, swap in zip(ands, swaps):  # put back, so that the signatures match the real level's
            if swap:
                node.instr_a, node.instr_b = node.instr_b, node.instr_a
    bot.vis_mask[:] = known
    bot.stack = BoundedStack(bot.stack)
    start = pose(sim)
    try:
        for step in range(1, PLAN_STEPS + 1):
            bot.stack.budget = BoundedStack.BUDGET
            action = bot.replan()
            if action is None or action == sim.actions.done:
                return None
            segment, finished = _segment_step(sim, action)
            if segment is not None:
                segment.start, start = start, pose(sim)
                segments.append(segment)
                now = signature(sim)  # back in an earlier state (picked something up, put it back): cut the loop
                for i, earlier in enumerate(segments):
                    if earlier.sig == now and not finished:
                        del segments[i:]
                        break
            if finished:
                return _skip_detours(segments, sim.grid), step
    except Exception:  # the bot asserts on levels it cannot play (e.g. a box it opened by mistake)
        return None
    return None


def _skip_detours(segments, grid):
    """Drop "pick up O, put it down elsewhere, ..., pick O up again" detours from the bot's plan: the bot picks up
    a key on its way to a door, finds the door blocked, puts the key down to clear the way, and comes back for it.
    O then stays where it was until it is needed, and the later segments expect it there. Only when the pickup
    and the drop together leave the mission where it was (not "pick up O", "put O next to P"), and O left where
    it was blocks none of the later segments' ways (checked on `grid`'s walls)."""
    width, i = grid.width, 0
    while i + 1 < len(segments):
        got, put = segments[i], segments[i + 1]
        again = next((p for p in range(i + 2, len(segments)) if segments[p].action == PICKUP
                      and segments[p].cell == put.cell), None)
        a, b = got.cell[1] * width + got.cell[0], put.cell[1] * width + put.cell[0]
        if (got.action != PICKUP or put.action != DROP or again is None or got.sig[2] != segments[i + 2].sig[2]
                or any(e[0] == a for seg in segments[i + 2:again + 1] for e in seg.sig[0])):
            i += 1
            continue
        moved = [((tuple(sorted((a,) + e[1:] if e[0] == b else e for e in seg.sig[0])),) + seg.sig[1:])
                 for seg in segments[i + 2:again + 1]]
        starts = [got.start] + [seg.start for seg in segments[i + 3:again + 1]]
        cells = [seg.cell for seg in segments[i + 2:again]] + [got.cell]
        if any(start is not None and start not in distances(passable_in(sig, grid, width, grid.height), cell)
               for sig, start, cell in zip(moved, starts, cells)):
            i += 1
            continue
        for seg, sig in zip(segments[i + 2:again + 1], moved):
            seg.sig = sig
        segments[again].cell = got.cell
        del segments[i:i + 2]
    return segments


class BabyAIExpert:
    """The expert for one BabyAIEnv; `turn()` is the next assistant turn from the env's current state."""

    def __init__(self, env):
        self.env = env
        self.plan, self.at, self._tables, self.seen = None, 0, {}, set()

    def _locate(self, sig):
        if self.plan is not None:
            for k in range(self.at, len(self.plan)):
                if self.plan[k].sig == sig:
                    return k
        return None

    def _distance(self, k, after, width, height):
        key = (k, after.sig)
        if key not in self._tables:
            self._tables[key] = distances(passable(after.grid, width, height, after.shut), self.plan[k].cell)
        return self._tables[key].get(after.pose)

    def action(self):
        env, u = self.env, self.env.env
        sig = signature(u)
        self.seen.add(sig)
        k = self._locate(sig)
        if k is None:
            self.plan, self._tables = make_plan(u), {}
            k = 0 if self.plan is not None else None
        if k is None:
            return "turn left"  # no plan from here (e.g. KeyInBox): look around
        self.at = k
        now = self._distance(k, _Snapshot(sig, pose(u), u), u.width, u.height)
        floor = (k, -now if now is not None else -FINISH)
        first = self._values(u, env.actions, env.view)
        finishing = [(len(steps), name) for name, steps, v in first if v[0] == FINISH]
        if finishing:
            return min(finishing)[1]  # the fewest primitive steps: the highest reward
        # look one action further for the most promising few: a turn that brings a door into view is worth its
        # round. Two rounds are charged ROUND_COST primitive moves more than one.
        first.sort(key=lambda x: x[2], reverse=True)
        best, best_value = None, None
        for rank, (name, steps, v1) in enumerate(first):
            value = v1
            if rank < self.LOOKAHEAD:
                sim = clone(u)
                _, _, obs = run_primitives(sim, steps, env.view)
                _, actions, _ = describe(sim, obs)
                later = [(j, d - self.ROUND_COST) for _, _, (j, d) in self._values(sim, actions, obs["image"])]
                value = max(later + [v1])
            if value > floor and (best_value is None or (value, v1, -len(steps)) > best_value):
                best, best_value = name, (value, v1, -len(steps))
        return best or "turn left"

    ROUND_COST = 3  # primitive moves a round is worth when comparing one-round and two-round outcomes
    LOOKAHEAD = 6  # first actions looked one step further

    def _values(self, u, actions, view):
        """[(name, steps, value)] for the offered actions that stay on the plan; value (segment, -distance) or
        (FINISH, 0) for an action that completes the task."""
        out = []
        for name, steps in actions.items():
            if not steps:
                continue
            reward, terminated, after = simulate(u, steps, view)
            if terminated and reward > 0:
                out.append((name, steps, (FINISH, 0)))
                continue
            j = self._locate(after.sig)
            if j is None and self._loose_drop(steps, after):
                j = self.at + 1  # the plan goes on from here after a replan next round
            d = None if j is None or j >= len(self.plan) else self._distance(j, after, u.width, u.height)
            if d is not None:
                out.append((name, steps, (j, -d)))
        return out

    def _loose_drop(self, steps, after):
        """The plan wants the load put down now, and this drops it elsewhere with the same effect on the mission
        (none, or "put X next to Y" done), away from any door (where it could block a way): as good as the bot's
        spot, and saves walking there. The bot plans again from there next round."""
        k, plan = self.at, self.plan
        if (steps != [DROP] or plan[k].action != DROP or k + 1 >= len(plan) or after.sig[1:] != plan[k + 1].sig[1:]
                or after.sig in self.seen):
            return False  # (the mission must get as far as with the bot's drop, e.g. "put X next to Y" done; a
            # state seen before in this episode: putting the load back where it was could loop)
        x, y = front(after.pose)
        near = [after.grid.get(x + dx, y + dy) for dx, dy in DIR_TO_VEC]
        return not any(c is not None and c.type == "door" for c in near)

    def intent(self):
        """What the plan works towards now, in words, or None."""
        if self.plan is None or self.at >= len(self.plan):
            return None
        kind, name = self.plan[self.at].what
        if name is None:
            return None
        return {"pickup": f"pick up the {name}", "drop": f"put the {name} down in the right place",
                "open": f"open the {name}", "face": f"get to the {name}"}[kind]

    def turn(self):
        action = self.action()
        return f"Thought:\n{self.thought(action)}\n\nAction:\n{action}"

    def thought(self, action):
        goal, intent, carrying = self.env.goal, self.intent(), self.env.env.carrying
        if action.startswith("pickup "):
            obj = action[len("pickup "):].rsplit(" ", 1)[0]
            if all(w in goal for w in obj.split(" ")):
                return f"The {obj} my goal mentions is within reach, so I will pick it up."
            then = self.plan[self.at + 1].what if self.plan and self.at + 1 < len(self.plan) else (None, None)
            if then[0] == "open" and then[1]:
                return f"The {obj} opens the {then[1]} I have to get through, so I will pick it up."
            if then[0] == "drop":
                return f"The {obj} is in my way; I will pick it up and put it aside."
            return f"I need the {obj} out of the way or in hand before I can {goal}, so I will pick it up."
        if action.startswith("go to "):
            obj = action[len("go to "):].rsplit(" ", 1)[0]
            if all(w in goal for w in obj.split(" ") if w not in ("open", "closed", "locked")):
                return f"My goal is to {goal}. I can see the {obj}, so I will go to it."
            return f"My goal is to {goal}. Going to the {obj} I can see gets me closer to that."
        if action.startswith("toggle and go through "):
            door = action[len("toggle and go through "):].rsplit(" ", 1)[0]
            why = " with the key I carry" if "locked" in door else ""
            return f"What I need lies beyond the {door}; I will open it{why} and walk through."
        if action.startswith("go through "):
            door = action[len("go through "):].rsplit(" ", 1)[0]
            return f"I will go through the {door} to reach the next room."
        if action == "toggle":
            return f"The door in front of me has to be opened to {goal}; I will toggle it."
        if action == "drop":
            what = f"{carrying.color} {carrying.type}" if carrying else "object"
            return f"This is a good place for the {what}; I will put it down in front of me."
        why = f"I need to {intent}" if intent else f"I have not found what I need to {goal} yet"
        if action == "move forward":
            return f"{why}, and the way ahead is clear, so I will move forward."
        return f"{why}, so I will {action} to face the right way."
