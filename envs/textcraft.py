"""TextCraft (Prasad et al. 2023, ADaPT) as AgentGym serves it, on Minecraft recipes from the `minecraft-data`
package, with a scripted crafting expert.

Rules and texts follow AgentGym's agentenv-textcraft server (environment.py, crafting_tree.py, utils.py; the 2024
version): the first observation is "Crafting commands:\\n<one command a line>\\n\\nGoal: craft <item>.", the
actions are `get N <item>` (base items only), `craft <item> using N <item>, N <item>` (one application of a listed
recipe; a generic ingredient such as "planks" is paid with any of its kinds, e.g. "dark oak planks") and
`inventory`; the answers are the server's, word for word ("Got 2 oak logs", "Crafted 4 minecraft:oak_planks",
"Inventory: [oak planks] (4) ", "Could not find ...", "Could not execute ..."), and crafting the goal gives reward 1
and ends the episode. The client side (instruction, ack, how an assistant turn becomes the action) is
envs/protocol.py; AgentGym allows 20 rounds.

What differs from AgentGym, and why:
- Recipes: Minecraft Java 1.16.2's crafting recipes as the `minecraft-data` PyPI package ships them
  (PrismarineJS/minecraft-data via SpockBotMC/python-minecraft-data, MIT licence), not AgentGym's recipe files.
  That data lists every variant of a generic ingredient as its own recipe (a chest from oak planks, from birch
  planks, ...). We fold the variants back into one recipe with a generic ingredient, as Minecraft's tags do:
  "planks", "wooden slab" and "wool" are generic (any kind is accepted, as AgentGym's tags), and the log families
  ("oak logs", "crimson stems", "logs") and "coals" become base items that can be fetched, as AgentGym's uncraftable
  tags do ("get 1 oak logs"). Smelting is not crafting, so smelted items (glass, stone, ...) are base items, and
  single-ingredient "..._block" unpacking recipes are dropped, both as in AgentGym. Recipes that would close a
  cycle are dropped in a fixed order.
- Determinism: AgentGym's server shuffles the command list with Python's global `random` and builds it from sets
  (the order changes with PYTHONHASHSEED) and picks goals in the order the filesystem lists its recipe files. Here
  everything is sorted and each task draws from `random.Random(task_id)`: the same task id gives the same text in
  every process.
- Goals: AgentGym's goal for data_idx i is the i-th craftable item sorted by recipe depth (1: 125, 2: 291, 3: 117,
  4: 11 of its 544 goals). We keep those proportions (DEPTH_WEIGHTS) and interleave them, so any block of 544
  consecutive task ids has exactly AgentGym's mix of depths 1-4, and the item of each depth cycles through ours
  (124 / 293 / 111 / 6 goals of depth 1 / 2 / 3 / 4: items the expert cannot craft within the 20 rounds, e.g. an
  anvil, which needs 31 iron ingots each crafted from nuggets, are left out; AgentGym keeps such goals).
- AgentGym's 2024 `traverse_recipe_tree` appends sub-recipes to the crafting tree's own recipe lists while it
  walks them (fixed in its 2025 code); we list the goal's recipe tree without that side effect.

Task ids 0..NUM_TASKS-1; data/textcraft_test_ids.txt (0..99) are the test tasks, the bundled training data uses
ids from 100 on (data/README.md).
"""
import json
import os
import random
import re
from math import ceil

from envs import protocol
from envs.base import Env

MC_VERSION = "1.16.2"   # the Java edition data closest to AgentGym's recipe files (nether wood, no copper)
NUM_TASKS = 5440        # ten rounds of the 544-goal depth schedule
DEPTH_WEIGHTS = {1: 125, 2: 291, 3: 117, 4: 11}  # AgentGym's goals per minimum recipe depth (its 544 goals)
MAX_DISTRACTORS = 10    # AgentGym: up to 10 recipes that use the same ingredients, mixed into the commands

WOODS = ("oak", "spruce", "birch", "jungle", "acacia", "dark_oak", "crimson", "warped")
GENERIC = ("planks", "wooden_slab", "wool")   # tags: paid with any member; never fetched themselves


def families(name):
    """The generic names an item can stand for, finest first (a recipe slot whose variants all fit one of them is
    folded into it)."""
    if name.endswith("_planks"):
        return ["planks"]
    if name.endswith("_wool"):
        return ["wool"]
    if name.endswith("_slab") and name[:-len("_slab")] in WOODS:
        return ["wooden_slab"]
    if name in ("coal", "charcoal"):
        return ["coals"]
    for wood in WOODS:
        stem = "stems" if wood in ("crimson", "warped") else "logs"
        kinds = ("stem", "hyphae") if stem == "stems" else ("log", "wood")
        if name in [f"{pre}{wood}_{k}" for pre in ("", "stripped_") for k in kinds]:
            return [f"{wood}_{stem}", "logs"]
    return []


def load_minecraft_recipes(version=MC_VERSION):
    """[(output, count, [(input, count), ...]), ...] from minecraft-data's recipes.json, one entry per recipe,
    inputs in order of first appearance (row by row for shaped recipes), counts summed."""
    import importlib.util
    spec = importlib.util.find_spec("minecraft_data")
    if spec is None:
        raise ImportError("TextCraft needs the minecraft-data package: pip install minecraft-data==3.20.0")
    root = os.path.join(spec.submodule_search_locations[0], "data", "data")
    paths = json.load(open(os.path.join(root, "dataPaths.json")))["pc"][version]
    items = {i["id"]: i["name"] for i in json.load(open(os.path.join(root, paths["items"], "items.json")))}
    raw = json.load(open(os.path.join(root, paths["recipes"], "recipes.json")))
    out = []
    for key in sorted(raw, key=int):
        for rec in raw[key]:
            cells = [c for row in rec["inShape"] for c in row] if "inShape" in rec else rec["ingredients"]
            counts = {}
            for c in cells:
                if c is not None:
                    c = c["id"] if isinstance(c, dict) else c
                    counts[items[c]] = counts.get(items[c], 0) + 1
            out.append((items[rec["result"]["id"]], rec["result"].get("count", 1), list(counts.items())))
    return out


class RecipeBook:
    """The crafting rules: recipes per item (generic slots folded), generic tags and their members, base items,
    minimum depths. Built once per process (`book()`)."""

    def __init__(self, raw):
        # fold variants: recipes of one output that agree once every ingredient is replaced by its coarsest family
        groups = {}
        for out, n, ins in raw:
            if len(ins) == 1 and ins[0][0].endswith("_block"):
                continue  # AgentGym drops "9 iron ingot from 1 iron block" style unpacking
            if any(name == out for name, _ in ins):
                continue
            key = (out, n, tuple((families(i)[-1] if families(i) else i, c) for i, c in ins))
            groups.setdefault(key, []).append(ins)
        folded = []
        for (out, n, key), variants in groups.items():
            slots = []
            for s, (_, c) in enumerate(key):
                names = {v[s][0] for v in variants}
                if len(names) == 1:
                    slots.append((names.pop(), c))
                else:  # the finest family that covers every variant of this slot
                    fam = next(f for f in families(sorted(names)[0]) if all(f in families(x) for x in names))
                    slots.append((fam, c))
            folded.append((out, n, tuple(slots)))
        folded = sorted(set(folded))
        # generic tags used by some recipe -> their members (every item of the family that occurs anywhere)
        used = {i for _, _, ins in folded for i, _ in ins}
        members = {}
        for name in sorted(used | {out for out, _, _ in folded}):
            for f in families(name):
                if f in GENERIC and f in used:
                    members.setdefault(f, []).append(name)
        self.tags = members
        # drop recipes that would close a cycle, in sorted order (AgentGym drops them in file-listing order)
        self.recipes = {}  # item -> [(count, ((input, count), ...)), ...]
        for out, n, ins in folded:
            if not any(self._reaches(i, out) for i, _ in ins):
                self.recipes.setdefault(out, []).append((n, ins))
        used = {i for rs in self.recipes.values() for _, ins in rs for i, _ in ins}
        self.base = sorted(i for i in used if i not in self.recipes and i not in self.tags)
        self.depth, self._goals = {}, {}
        for item in sorted(self.recipes):
            self.min_depth(item)

    def expand(self, name):
        """The concrete items that can pay for `name` (its members for a generic tag)."""
        return self.tags.get(name, [name])

    def _reaches(self, start, target, seen=None):
        seen = set() if seen is None else seen
        for item in self.expand(start):
            if item == target:
                return True
            if item in seen:
                continue
            seen.add(item)
            if any(self._reaches(i, target, seen) for _, ins in self.recipes.get(item, []) for i, _ in ins):
                return True
        return False

    def min_depth(self, name):
        """AgentGym's get_min_depth: 0 for a base item; else the easiest recipe's deepest ingredient + 1 (a generic
        tag counts as its easiest member)."""
        if name in self.tags:
            return min(self.min_depth(m) for m in self.tags[name])
        if name not in self.depth:
            self.depth[name] = 0 if name not in self.recipes else min(
                max(self.min_depth(i) + 1 for i, _ in ins) for _, ins in self.recipes[name])
        return self.depth[name]

    def goals(self, depth, max_actions=20):
        """Items of this minimum depth that the expert crafts from nothing within `max_actions` (AgentGym's goals
        include some that no one can craft in its 20 rounds, e.g. an anvil needs 31 iron ingots, each crafted
        from nuggets: we leave those out)."""
        key = (depth, max_actions)
        if key not in self._goals:
            self._goals[key] = sorted(i for i in self.recipes
                                      if self.min_depth(i) == depth and len(plan(self, i, {})) <= max_actions)
        return list(self._goals[key])


def text(name):
    """AgentGym's item_id_to_str: underscores become spaces."""
    return name.replace("_", " ")


def command(out, n, ins):
    """AgentGym's Recipe.recipe_str."""
    return f"craft {n} {text(out)} using " + ", ".join(f"{c} {text(i)}" for i, c in ins)


def kind_of(bk, name, have):
    """The concrete item the expert pays a recipe slot with: itself, or for a generic tag a kind already held, else
    the cheapest kind (shallowest, then fewest recipes, then by name)."""
    if name not in bk.tags:
        return name
    held = [k for k in bk.tags[name] if have.get(k, 0) > 0]
    return held[0] if held else min(bk.tags[name], key=lambda k: (bk.min_depth(k), len(bk.recipes.get(k, [])), k))


def plan(bk, goal, inventory):
    """The expert's actions that craft `goal` from `inventory`: every base item fetched first in one `get` each
    (summed over the tree), then the crafts bottom-up, as ("get", item, n) and ("craft", item, n, [(kind, n), ...]).
    For each item the recipe with the fewest actions below it (ties: the first in sorted order)."""
    have = dict(inventory)
    gets, crafts = {}, []

    def actions(item, count, seen=()):
        """Rough number of actions to make `count` of `item` from nothing (1 per get, 1 per craft)."""
        if item not in bk.recipes or item in seen:
            return 1
        return min(ceil(count / n) + sum(actions(kind_of(bk, i, have), c * ceil(count / n), seen + (item,))
                                         for i, c in ins) for n, ins in bk.recipes[item])

    def obtain(item, count):
        held = have.get(item, 0)
        if held >= count:
            have[item] = held - count
            return
        need = count - held
        have[item] = 0
        if item not in bk.recipes:
            gets[item] = gets.get(item, 0) + need
            return
        n, ins = min(bk.recipes[item], key=lambda r: ceil(need / r[0]) + sum(
            actions(kind_of(bk, i, have), c * ceil(need / r[0]), (item,)) for i, c in r[1]))
        batches = ceil(need / n)
        paid = [(kind_of(bk, i, have), c) for i, c in ins]
        for kind, c in paid:
            obtain(kind, c * batches)
        crafts.extend([(item, n, paid)] * batches)
        have[item] = have.get(item, 0) + n * batches - need

    obtain(goal, 1)
    return [("get", i, c) for i, c in gets.items()] + [("craft", out, n, paid) for out, n, paid in crafts]


_BOOK = None


def book():
    global _BOOK
    if _BOOK is None:
        _BOOK = RecipeBook(load_minecraft_recipes())
    return _BOOK


def depth_schedule():
    """The depth of each of 544 consecutive task ids: AgentGym's counts per depth, spread evenly."""
    slots = [((k + 0.5) / w, d) for d, w in DEPTH_WEIGHTS.items() for k in range(w)]
    return [d for _, d in sorted(slots)]


def goal_of(task_id, bk=None):
    """Task id -> goal item: the depth from the schedule, then the next item of that depth in a fixed shuffle."""
    bk = bk or book()
    sched = depth_schedule()
    cycle, pos = divmod(int(task_id), len(sched))
    depth = sched[pos]
    nth = sched[:pos].count(depth) + cycle * DEPTH_WEIGHTS[depth]
    items = bk.goals(depth)
    random.Random(depth).shuffle(items)
    return items[nth % len(items)]


class TextCraftEnv(Env):
    name, split, max_rounds = "textcraft", "held-in", 20

    @staticmethod
    def parse_action(text):
        """AgentGym's 2024 TextCraft client: after the LAST "Action:", letters, digits, commas and spaces only."""
        return protocol.textcraft_action(text)

    def __init__(self):
        self.book = book()
        self.done = True
        self.inventory = {}

    def task_ids(self):
        return range(NUM_TASKS)

    def instruction(self):
        return protocol.INSTRUCTION["textcraft"]

    def reset(self, task_id):
        task_id = int(task_id)
        if not 0 <= task_id < NUM_TASKS:
            raise ValueError(f"textcraft task id {task_id} out of range 0..{NUM_TASKS - 1}")
        rng = random.Random(task_id)
        self.goal = goal_of(task_id, self.book)
        self.inventory = {}
        self.done = False
        self.commands = self._commands(rng)
        return f"Crafting commands:\n{self.commands}\n\nGoal: craft {text(self.goal)}."

    def _commands(self, rng):
        """AgentGym's create_recipe_set + reset: the goal's recipe tree, plus up to 10 recipes that use one of its
        ingredients (from up to 10 sampled uses per ingredient), shuffled."""
        bk = self.book
        tree, todo, seen = [], [self.goal], set()
        while todo:
            item = todo.pop(0)
            if item in seen:
                continue
            seen.add(item)
            for m in bk.expand(item):
                for n, ins in bk.recipes.get(m, []):
                    tree.append(command(m, n, ins))
                    todo += [i for i, _ in ins]
        tree = list(dict.fromkeys(tree))
        uses = {}
        for out in sorted(bk.recipes):
            for n, ins in bk.recipes[out]:
                for i, _ in ins:
                    uses.setdefault(i, []).append(command(out, n, ins))
        distractors = []
        for line in tree:
            for i in parse_command(line)[2]:
                pool = uses.get(i[0], [])
                distractors += rng.sample(pool, min(len(pool), MAX_DISTRACTORS))
        distractors = sorted(set(distractors) - set(tree))
        lines = tree + rng.sample(distractors, min(len(distractors), MAX_DISTRACTORS))
        rng.shuffle(lines)
        return "\n".join(lines)

    # ---- the server's step (AgentGym environment.py)
    def step(self, turn):
        if self.done:
            return "The task has finished.", 0.0, True
        action = self.parse_action(turn)
        m = re.match(r"craft (.*) using (.*)", action)
        if m:
            return self._craft(m.group(1), m.group(2))
        m = re.match(r"get ([0-9]+) (.*)", action)
        if m:
            return self._get(int(m.group(1)), m.group(2))
        if re.match(r"inventory", action):
            if not self.inventory:
                return "Inventory: You are not carrying anything.", 0.0, False
            return "Inventory: " + "".join(f"[{text(i)}] ({n}) " for i, n in self.inventory.items()), 0.0, False
        return f"Could not execute {action}", 0.0, False

    def _get(self, amount, item):
        name = item.replace(" ", "_")
        if name in self.book.recipes or name in self.book.tags or name not in self.book.base:
            return f"Could not find {item}", 0.0, False
        self.inventory[name] = self.inventory.get(name, 0) + amount
        return f"Got {amount} {item}", 0.0, False

    def _craft(self, target, ingredients):
        m = re.match("([0-9]+) (.*)", target)
        out, n = (m.group(2), int(m.group(1))) if m else (target, 1)
        out = out.replace(" ", "_")
        ins = []
        for part in ingredients.split(","):
            m = re.match(r"([0-9]+) (.*)", part.strip())
            if not m:
                return f"Wrong item format: {part.strip()}", 0.0, False
            ins.append((m.group(2).replace(" ", "_"), int(m.group(1))))
        is_tag = out in self.book.tags
        if any(i in self.book.tags or self.inventory.get(i, 0) < c for i, c in ins):
            return f"Could not find enough items to craft {None if is_tag else 'minecraft:' + out}", 0.0, False
        made = None if is_tag else self._match(out, ins)
        if made is None:
            tag = f"'minecraft:{out}', item_id=None" if is_tag else f"None, item_id='minecraft:{out}'"
            return (f"Could not find a valid recipe for ItemTagWithCount(item_tag=ItemTag(tag={tag}), count={n})",
                    0.0, False)
        for i, c in ins:
            self.inventory[i] -= c
            if self.inventory[i] == 0:
                del self.inventory[i]
        self.inventory[out] = self.inventory.get(out, 0) + made
        if out == self.goal:
            self.done = True
            return f"Crafted {made} minecraft:{out}", 1.0, True
        return f"Crafted {made} minecraft:{out}", 0.0, False

    def _match(self, out, ins):
        """AgentGym's CraftingTree.craft: a recipe of `out` whose every ingredient is given with exactly its count
        (a generic one by any member) and nothing else; returns the recipe's output count or None."""
        for n, recipe in self.book.recipes.get(out, []):
            left = list(ins)
            for name, count in recipe:
                hit = next((x for x in left if x[0] in self.book.expand(name)), None)
                if hit is None or hit[1] != count:
                    break
                left.remove(hit)
            else:
                if not left:
                    return n
        return None

    # ---- the expert
    def expert_turn(self):
        steps = plan(self.book, self.goal, self.inventory)
        if not steps:  # cannot happen while the episode runs (the goal is crafted in the last step)
            return "Thought:\nI should check what I am carrying.\n\nAction:\ninventory"
        step, rest = steps[0], steps[1:]
        item = step[1]
        users = [s for s in rest if s[0] == "craft" and any(i == item for i, _ in s[3])]
        need = sum(c for s in users for i, c in s[3] if i == item)
        names = " and ".join(dict.fromkeys(text(s[1]) for s in users))
        if step[0] == "get":
            thought = (f"I need {need} {text(item)} for {names}, and no crafting command makes {text(item)}, so "
                       f"I get it from the environment.")
            return f"Thought:\n{thought}\n\nAction:\nget {step[2]} {text(item)}"
        action = command(*step[1:])
        if item == self.goal:
            thought = f"I have all the ingredients of {text(item)}, the goal, so I craft it with \"{action}\"."
        else:
            held = self.inventory.get(item, 0)
            thought = (f"{text(item).capitalize()} is an ingredient of {names}: I need {need} and have {held}, so "
                       f"I craft it with \"{action}\".")
        return f"Thought:\n{thought}\n\nAction:\n{action}"

    def close(self):
        self.done = True


def parse_command(line):
    """"craft 4 oak planks using 1 oak logs" -> ("oak_planks", 4, [("oak_logs", 1)])."""
    m = re.match(r"craft ([0-9]+) (.*) using (.*)", line)
    ins = [re.match(r"([0-9]+) (.*)", p.strip()).groups() for p in m.group(3).split(",")]
    return m.group(2).replace(" ", "_"), int(m.group(1)), [(i.replace(" ", "_"), int(c)) for c, i in ins]
