"""ScienceWorld as AgentGym serves it, in process (the `scienceworld` package; needs Java >= 11 on PATH), plus a
scripted expert that follows the simulator's gold action path.

    from envs.sciworld import SciWorldEnv
    env = SciWorldEnv()                      # starts a JVM (~5 s)
    obs = env.reset(0)                       # task 0 = boil, variation 0
    obs, score, done = env.step("Thought:\\n...\\n\\nAction:\\nopen door to kitchen")

What AgentGym does (agentenv-sciworld, environment.py), and so what this file does:
- task ids index a flat list of (task, variation): ScienceWorld's tasks in their own order, minus 5-1, 5-2
  (grow plant/fruit), 9-1..9-3 (inclined planes) and 10-1, 10-2 (Mendelian genetics), each with all its
  variations: 4639 tasks with scienceworld 1.2.3.
- reset loads the variation without simplifications, takes "look around", and the first observation is the task
  description, a newline, and that look-around text.
- an action is the text after the first "Action:" of the turn, passed to the simulator as it is; an unknown one
  gets the simulator's own answer ("No known action matches that input.").
- one change: the simulator lists a room's objects (the tab-indented lines) in an order that changes from one
  load to the next, so the same task would not give the same text twice; we sort each run of such lines.
- the reward reported each round is the simulator's running score, 0..100 (negative when the agent does
  something that fails the task, which also ends it); success is 100.

The expert plays the simulator's gold path (worked out at its first turn in a second simulator that only ever
loads tasks with their gold path), minus its "look around"s, one action a round with a short Thought. Paths
longer than the 30 rounds are shortened where the shorter version still scores 100 (see _make_plan). Measured
on variations 6-11 of all 23 task types (136 episodes, 2 CPU cores): 127/136 = 93 % reach 100, 126/130 = 97 %
without identify-life-stages-1, at ~0.7 episodes/s (16 rounds on average; a step takes 10-100 ms, loading with
the gold path ~1 s). Every failure is a plan still longer than 30 actions: identify-life-stages-1 1/6 (its turtle
has to be watched through 4 life stages), melt 4/6, freeze 5/6, measure-melting-point-unknown-substance 5/6
(measured while the expert still planned in the simulator it played in; since then, on the 40 test ids: 39/40).
The simulator's gold path itself can differ from one load to the next (e.g. which colour of wire it connects), so
two expert episodes of one task may differ, and a plan that fits 30 rounds once may not the next time.
Why a second simulator: loading a task with its gold path changes how that simulator reads actions on the same
task later, even after a plain reload (task 1599: "move book (the foundations of the origin of species) by charles
darwin in inventory to yellow box" is understood after a gold-path load of 1599 and is "No known action matches that
input." otherwise, as on AgentGym's server, which never loads a gold path). So the simulator the agent plays in is
loaded only the way AgentGym's server loads it, and an expert episode is what AgentGym's server would answer to the
same turns; the planner's simulator (a second JVM, started on the first expert turn) never plays.
"""

from envs import protocol
from envs.base import Env

INSTRUCTION = protocol.INSTRUCTION["sciworld"]

# the task type whose expert plan rarely fits in 30 rounds (see above): leave out where expert success matters
LONG_TASKS = ("identify-life-stages-1",)
EXCLUDED = {"5-1", "5-2", "9-1", "9-2", "9-3", "10-1", "10-2"}  # left out by AgentGym


class SciWorldEnv(Env):
    # the mean score, already 0..100 (x1), and negative down to -100 when the agent fails the task
    name, split, max_rounds, score, scale, lowest = "sciworld", "held-in", 30, "mean", 1.0, -100.0

    @staticmethod
    def success(reward):
        """Solved: the simulator's full score, 100 on its 0..100 scale."""
        return float(reward) >= 100.0

    def __init__(self):
        from scienceworld import ScienceWorldEnv
        self.env = ScienceWorldEnv()  # default step limit (100 moves), as AgentGym's server
        self.games = [(name, v) for key, name in self.env.tasks.items() if key not in EXCLUDED
                      for v in range(self.env.get_max_variations(name))]
        self.task_id, self.plan, self.planner = None, None, None

    def task_ids(self):
        return range(len(self.games))

    def instruction(self):
        return INSTRUCTION

    def reset(self, task_id):
        if not 0 <= int(task_id) < len(self.games):
            raise ValueError(f"sciworld: task id must be in [0, {len(self.games)}), got {task_id}")
        self.task_id = int(task_id)
        self.task_name, self.variation = self.games[self.task_id]
        self.env.load(self.task_name, self.variation, "")  # as AgentGym's server: no gold path (see the docstring)
        self.history, self.score, self.done = [], 0, False
        description = self.env.get_task_description()
        look, _, _ = self._step("look around")
        return protocol.first_observation("sciworld", {"task_description": description,
                                                       "observation": sort_listings(look)})

    def _step(self, action):
        """ScienceWorldEnv.step without the per-step extras (valid-action lists etc.) it computes but we never
        use; same observation, score and completion rule."""
        sim = self.env
        obs = sim.server.step(action)
        score = int(round(100 * sim.server.getScore()))
        done = bool(sim.server.getCompleted()) or sim.get_num_moves() > sim.envStepLimit or score < 0
        return obs, score, done

    def step(self, text):
        if self.task_id is None:
            raise RuntimeError("sciworld: step() before reset()")
        if self.done:
            return "The task with environment has finished.", float(self.score), True
        action = self.parse_action(text)
        self.history.append(action)
        obs, self.score, self.done = self._step(action)
        return sort_listings(obs), float(self.score), self.done

    # ---- expert: the simulator's gold path, shortened to fit AgentGym's 30 rounds, one action a round
    def expert_action(self):
        if getattr(self, "plan", None) is None or self.plan[0] != self.task_id:
            history = self.history  # plan from the start, then replay what happened so far (deterministic)
            self.plan = (self.task_id, self._make_plan())
            self.reset(self.task_id)
            for action in history:
                self.step("Action: " + action)
        plan, i = self.plan[1], len(self.history)  # assumes the episode so far followed the plan
        return plan[i] if i < len(plan) else "look around"

    def _make_plan(self):
        """The gold path without its "look around"s (they only describe the room). If that is longer than the
        30 rounds, shorter versions are tried in turn, each kept only if playing it still scores 100: long waits
        and repeated temperature checks folded into "wait" (10 ticks), then immediately repeated blocks of
        actions dropped, then pick-ups of what is already held, then rooms looked into and left the way the
        path came, then "examine X" checks."""
        plan = [a for a in self.gold_path() if a != "look around"]
        for shorten in (fold_waits, drop_repeats, drop_regrabs, drop_detours, drop_examines):
            if len(plan) <= self.max_rounds:
                break
            shorter = shorten(plan)
            if shorter != plan and self._scores_100(shorter):
                plan = shorter
        return plan

    def gold_path(self):
        """The simulator's gold path of the current task, from the planner's own simulator (never the one played)."""
        if self.planner is None:
            from scienceworld import ScienceWorldEnv
            self.planner = ScienceWorldEnv()
        name, variation = self.games[self.task_id]
        self.planner.load(name, variation, "", generateGoldPath=True)
        return self.planner.get_gold_action_sequence()

    def _scores_100(self, plan):
        self.reset(self.task_id)
        score = 0
        for action in plan:
            _, score, done = self._step(action)
            if done:
                break
        return score == 100

    def expert_turn(self):
        action = self.expert_action()
        return f"Thought:\n{thought(action, self.env.get_task_description())}\n\nAction:\n{action}"

    def close(self):
        for sim in (self.env, self.planner):
            if sim is not None:
                sim.close()
        self.env = self.planner = None


def sort_listings(text):
    """Sort each run of consecutive tab-indented lines (the simulator's object lists, in hash order)."""
    out, run = [], []
    for line in text.split("\n"):
        if line.startswith("\t"):
            run.append(line)
            continue
        out += sorted(run) + [line]
        run = []
    return "\n".join(out + sorted(run))


def fold_waits(plan):
    """Shorten a gold path: a run of n >= 10 "wait1" becomes n // 10 "wait" + n % 10 "wait1", and a run of
    r >= 3 identical (examine X, use thermometer ... on X) pairs keeps its last pair and turns the others (one
    tick each) into ceil(2 (r - 1) / 10) "wait"."""
    out, i = [], 0
    while i < len(plan):
        a = plan[i]
        if a == "wait1":
            j = i
            while j < len(plan) and plan[j] == "wait1":
                j += 1
            n = j - i
            out += ["wait"] * (n // 10) + ["wait1"] * (n % 10) if n >= 10 else ["wait1"] * n
            i = j
            continue
        if a.startswith("examine ") and i + 1 < len(plan) and plan[i + 1].startswith("use thermometer"):
            pair, r = plan[i:i + 2], 0
            while plan[i + 2 * r:i + 2 * r + 2] == pair:
                r += 1
            if r >= 3:
                out += ["wait"] * -(-2 * (r - 1) // 10) + pair
                i += 2 * r
                continue
        out.append(a)
        i += 1
    return out


def drop_repeats(plan):
    """Drop a block of 1-4 actions that repeats the block just before it (the gold path sometimes fills a pot
    at a sink twice, or picks up the pot it already holds)."""
    out = []
    for a in plan:
        out.append(a)
        for n in (4, 3, 2, 1):
            if len(out) >= 2 * n and out[-n:] == out[-2 * n:-n] and not any(x.startswith("wait") for x in out[-n:]):
                del out[-n:]
                break
    return out


def drop_regrabs(plan):
    """Drop "pick up X" while X is still held (picked up before, not moved, dropped or poured since)."""
    out, held = [], set()
    for a in plan:
        if a.startswith("pick up "):
            if a[len("pick up "):] in held:
                continue
            held.add(a[len("pick up "):])
        else:
            held = {x for x in held if f" {x} " not in f" {a} " or a.startswith(("use ", "focus on ", "examine "))}
        out.append(a)
    return out


def drop_detours(plan):
    """Drop a look into a room that the path leaves again straight away the way it came (open door to Y, go to
    Y, open door to X, go to X, with X the room it was in): the gold path searches rooms for what it needs."""
    out = []
    for a in plan:
        out.append(a)
        if len(out) >= 4 and out[-4].startswith("open door to ") and out[-2].startswith("open door to "):
            y, x = out[-4][len("open door to "):], out[-2][len("open door to "):]
            came_from = next((b[len("go to "):] for b in reversed(out[:-4]) if b.startswith("go to ")), None)
            if out[-3] == f"go to {y}" and out[-1] == f"go to {x}" and x == came_from:
                del out[-4:]
    return out


def drop_examines(plan):
    return [a for a in plan if not a.startswith("examine ")]


def thought(action, task):
    """A short reason for a gold-path action, from its verb."""
    verb, _, rest = action.partition(" ")
    task = task.split(".")[0].replace("Your task is to ", "").strip()
    if action.startswith("go to "):
        return f"To {task}, I need to be in the {action[6:]}; I will go there."
    if action.startswith("open door to "):
        return f"The door to the {action[13:]} is closed; I will open it so I can get through."
    if action.startswith("focus on "):
        return f"The {action[9:]} is what the task is about, so I will focus on it."
    if action.startswith("pick up "):
        return f"I need the {action[8:]} for this task, so I will pick it up."
    if action.startswith("move "):
        what, _, where = rest.partition(" to ")
        return f"The {what} has to go into the {where} for the next step, so I will move it there."
    if verb in ("activate", "deactivate"):
        return f"Now I should {verb} the {rest} to move the task forward."
    if action == "look around":
        return "Let me look around to see what is here."
    if verb.startswith("wait"):
        return "The process needs time to take effect, so I will wait."
    if verb in ("open", "close"):
        return f"I will {verb} the {rest} to get at what I need."
    if verb.isdigit():
        return "The simulator asked which object I meant; I will pick the right option."
    return f"To {task}, my next step is to {action}."
