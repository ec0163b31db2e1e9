"""Maze (LMRL-Gym, Abdulhai et al. 2023) as AgentGym serves it, with a shortest-path expert. No dependencies.

Rules, text and reward follow AgentGym's agentenv-lmrlgym server (maze/environment.py, maze/utils.py
`setup_maze_env`: fully observed, success reward 1, 0 otherwise, 50 env steps at most, then "Failure\n" with -1)
and LMRL-Gym's MazeEnv.step, word for word: an observation is "The goal is at position R, C. Your current position
is at position R, C. There is a wall above you." (no newline), the goal answers "Success\n" (with its newline).
The client side (prompt before the first observation, action = text after the first "Action:", nothing
normalised) is envs/protocol.py.

Task ids:
    0..24       AgentGym's 25 games, the test set (the paper's Maze column is out of these 25): the LMRL-Gym
                double-T maze, goal (8, 6), start = AgentGym's start_positions[id] (AgentGym lists a 26th start,
                (8, 6), which is the goal itself and which its server cannot reset).
    1000..1999  OUR OWN mazes, for training data only (AgentGym's server does not know them: "The game 1000 is not
                valid."): a 13x10 maze from LMRL-Gym's `random_maze` generator seeded with the task id, with start
                and goal drawn from its free cells at a shortest-path distance of 3..12, so every task is solvable
                within AgentGym's 15 rounds. They are numbered from 1000 so that they can never be mistaken for
                AgentGym games.
"""
import random
from collections import deque

from envs import protocol
from envs.base import Env

DOUBLE_T_MAZE = [
    "1111111111111",
    "1000001000001",
    "1110111110111",
    "1110111110111",
    "1110111110111",
    "1110000000111",
    "1111110111111",
    "1111110111111",
    "1111110111111",
    "1111111111111",
]
DOUBLE_T_GOAL = (8, 6)
DOUBLE_T_STARTS = [(1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (1, 7), (1, 8), (1, 9), (1, 10), (1, 11), (2, 3), (3, 3),
                   (4, 3), (5, 3), (5, 4), (5, 5), (5, 6), (6, 6), (7, 6), (5, 7), (5, 8), (5, 9), (4, 9), (3, 9),
                   (2, 9)]
OWN_FIRST, NUM_OWN = 1000, 1000  # our own mazes: task ids 1000..1999
MAX_ENV_STEPS = 50  # LMRL-Gym's max_steps in AgentGym's setup_maze_env

# LMRL-Gym's manhatten_actions are these with a trailing "\n", which AgentGym's server appends to the client's
# (stripped) action: so an action moves exactly when it is one of these four strings. "up", "Move up" do not.
ACTIONS = {"move left": (0, -1), "move right": (0, 1), "move up": (-1, 0), "move down": (1, 0)}
# LMRL-Gym describes walls in this order.
WALL_DIRS = (("to your right", (0, 1)), ("to your left", (0, -1)), ("above you", (-1, 0)), ("below you", (1, 0)))

INSTRUCTION = protocol.INSTRUCTION["maze"]
PROMPT = protocol.MAZE_PROMPT  # the client puts it, a newline, and the server's first observation together


def random_maze(rng, width=13, height=10, complexity=0.75, density=0.75):
    """LMRL-Gym's `random_maze` (the Wikipedia maze generator), with a seeded `random.Random` for its RNG."""
    shape = ((height // 2) * 2 + 1, (width // 2) * 2 + 1)
    complexity = int(complexity * (5 * (shape[0] + shape[1])))
    density = int(density * ((shape[0] // 2) * (shape[1] // 2)))
    z = [[0] * shape[1] for _ in range(shape[0])]
    for c in range(shape[1]):
        z[0][c] = z[-1][c] = 1
    for r in range(shape[0]):
        z[r][0] = z[r][-1] = 1
    for _ in range(density):
        x, y = rng.randint(0, shape[1] // 2) * 2, rng.randint(0, shape[0] // 2) * 2
        z[y][x] = 1
        for _ in range(complexity):
            nbrs = []
            if x > 1:
                nbrs.append((y, x - 2))
            if x < shape[1] - 2:
                nbrs.append((y, x + 2))
            if y > 1:
                nbrs.append((y - 2, x))
            if y < shape[0] - 2:
                nbrs.append((y + 2, x))
            if nbrs:
                y_, x_ = nbrs[rng.randrange(len(nbrs))]
                if z[y_][x_] == 0:
                    z[y_][x_] = 1
                    z[y_ + (y - y_) // 2][x_ + (x - x_) // 2] = 1
                    x, y = x_, y_
    return z


def distances(maze, source):
    """BFS distance from `source` to every free cell."""
    dist = {source: 0}
    queue = deque([source])
    while queue:
        r, c = queue.popleft()
        for dr, dc in ACTIONS.values():
            nxt = (r + dr, c + dc)
            if maze[nxt[0]][nxt[1]] == 0 and nxt not in dist:
                dist[nxt] = dist[(r, c)] + 1
                queue.append(nxt)
    return dist


def make_task(task_id):
    """(maze as a list of int rows, start, goal) for a task id."""
    if 0 <= task_id < len(DOUBLE_T_STARTS):
        return [[int(ch) for ch in row] for row in DOUBLE_T_MAZE], DOUBLE_T_STARTS[task_id], DOUBLE_T_GOAL
    if not OWN_FIRST <= task_id < OWN_FIRST + NUM_OWN:
        raise ValueError(f"maze: task id {task_id} out of range: 0..{len(DOUBLE_T_STARTS) - 1} are AgentGym's "
                         f"games, {OWN_FIRST}..{OWN_FIRST + NUM_OWN - 1} our own training mazes")
    rng = random.Random(task_id)
    while True:
        maze = random_maze(rng)
        free = [(r, c) for r in range(len(maze)) for c in range(len(maze[0])) if maze[r][c] == 0]
        for _ in range(50):
            goal = rng.choice(free)
            reach = [p for p, d in distances(maze, goal).items() if 3 <= d <= 12]
            if reach:
                return maze, rng.choice(reach), goal


class MazeEnv(Env):
    name, split, max_rounds = "maze", "held-in", 15

    def __init__(self):
        self.maze = self.pos = self.goal = None
        self.steps = 0
        self.done = True

    def task_ids(self):
        return list(range(len(DOUBLE_T_STARTS))) + list(range(OWN_FIRST, OWN_FIRST + NUM_OWN))

    def instruction(self):
        return INSTRUCTION

    def describe(self):
        (gr, gc), (r, c) = self.goal, self.pos
        walls = [name for name, (dr, dc) in WALL_DIRS if self.maze[r + dr][c + dc] == 1]
        if not walls:
            wall_text = "There are no walls near you."
        elif len(walls) == 1:
            wall_text = f"There is a wall {walls[0]}."
        else:
            wall_text = f"There are walls {', '.join(walls)}."
        return f"The goal is at position {gr}, {gc}. Your current position is at position {r}, {c}. {wall_text}"

    def reset(self, task_id):
        self.maze, self.pos, self.goal = make_task(int(task_id))
        self.steps, self.done = 0, False
        return protocol.first_observation("maze", {"observation": self.describe()})

    def step(self, text):
        if self.done:
            return "The task has finished.", 0.0, True
        if self.steps >= MAX_ENV_STEPS:
            self.done = True
            return "Failure\n", -1.0, True
        action = self.parse_action(text)  # AgentGym's 2024 client: the text after the first "Action:"
        if action in ACTIONS:  # an unknown action leaves the position unchanged, as in LMRL-Gym
            dr, dc = ACTIONS[action]
            if self.maze[self.pos[0] + dr][self.pos[1] + dc] == 0:
                self.pos = (self.pos[0] + dr, self.pos[1] + dc)
        if self.pos == self.goal:
            self.done = True
            return "Success\n", 1.0, True
        self.steps += 1
        return self.describe(), 0.0, False

    def expert_turn(self):
        dist = distances(self.maze, self.goal)  # distance to the goal from every cell
        here = dist[self.pos]
        for action, (dr, dc) in ACTIONS.items():
            nxt = (self.pos[0] + dr, self.pos[1] + dc)
            if dist.get(nxt, 1 << 30) == here - 1:
                break
        (gr, gc), (r, c) = self.goal, self.pos
        direction = action.split()[1]
        if here == 1:
            side = "to the " if direction in ("left", "right") else ""
            thought = f"The goal at {gr}, {gc} is right next to me, one step {side}{direction}."
        else:
            blocked = [name for name, (dr, dc) in WALL_DIRS if self.maze[r + dr][c + dc] == 1]
            walls = f" Walls are {', '.join(blocked)}." if blocked else ""
            thought = (f"I am at {r}, {c} and the goal is at {gr}, {gc}.{walls} The shortest open path to the goal "
                       f"is {here} steps long and starts by going {direction}, so I {action}.")
        return f"Thought:\n{thought}\n\nAction:\n{action}"

    def close(self):
        self.done = True
