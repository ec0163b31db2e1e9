"""AgentTraj-L's published shape, as a small fixture of our own: one JSON list per environment file, with AgentGym's
file names and item-id prefixes, for the tests that run the stages on data laid out as the real download is.

AgentTraj-L (huggingface.co/datasets/AgentGym/AgentTraj-L) is eleven files, one JSON list of records each:
alfworld_train.json, babyai_train.json, lmrlgym_maze_train.json, lmrlgym_wordle_train.json, sciworld_train.json,
sqlgym_train.json, textcraft_train.json, tool_movie_train.json, tool_todo_train.json, tool_weather_train.json,
webshop_train.json. A record is {"conversations": [{"from", "loss", "value"}, ...], "item_id"}: the instruction
(loss null), the acknowledgement ("Ok.", or the long "OK. I'll follow ..." of the LMRL-Gym and embodied envs; loss
false), then observation / "Thought: ...\\nAction: ..." turns (loss null / true). The item id carries the file's
prefix: lmrlgym_maze_12, tool_weather_5, and plainly webshop_6, babyai_4.

Nothing here comes from AgentGym's data. The envs that are built in here (babyai, maze, wordle, sciworld,
textcraft) get the first trajectories of the bundled data/<env>_train.jsonl, re-id'd with the prefix and the same
task number (maze_1001 -> lmrlgym_maze_1001), so the built-in envs still reset and replay them; the others get
synthetic trajectories (their env's instruction from envs/protocol.py where there is one, made-up observations).

    from tests.agenttraj import write_agenttraj
    files = write_agenttraj(tmp_path / "AgentTraj-L", n_per_env=3)       # {env: path of its JSON list}
    python tests/agenttraj.py OUT_DIR [--n-per-env 3]
"""
import argparse
import json
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# env -> AgentTraj-L's file stem, which is also the item-id prefix of its records
FILES = {"alfworld": "alfworld", "babyai": "babyai", "maze": "lmrlgym_maze", "wordle": "lmrlgym_wordle",
         "sciworld": "sciworld", "sqlgym": "sqlgym", "textcraft": "textcraft", "movie": "tool_movie",
         "todo": "tool_todo", "weather": "tool_weather", "webshop": "webshop"}
BUNDLED = ("babyai", "maze", "wordle", "sciworld", "textcraft")  # data/<env>_train.jsonl exists

# made-up observations and actions of the envs without bundled data (the action syntax of each env's client)
SYNTHETIC = {
    "alfworld": ("You are in the middle of a room. Looking around you, you see a {} 1, a shelf 2.",
                 ("go to {} 1", "take mug 1 from {} 1", "put mug 1 in/on shelf 2")),
    "sqlgym": ("Database schema: table {}(id, name, price). Question: how many rows cost more than 3?",
               ("SELECT COUNT(*) FROM {} WHERE price > 3",)),
    "movie": ("Question: which year was the film '{}' released?",
              ("search_movie with Action Input: {{\"movie_name\": \"{}\"}}", "finish with Action Input: {{}}")),
    "todo": ("Goal: mark the task '{}' as done.",
             ("get_user_current_date with Action Input: {{}}", "complete_task with Action Input: "
                                                                 "{{\"name\": \"{}\"}}")),
    "weather": ("Query: what is the lowest temperature in {} tomorrow?",
                ("get_user_current_date with Action Input: {{}}", "get_latitude_longitude with Action Input: "
                                                                    "{{\"name\": \"{}\"}}")),
    "webshop": ("WebShop [SEP] Instruction: [SEP] find me a {} under 30 dollars [SEP] Search",
                ("search[{}]", "click[B0{}]", "click[Buy Now]")),
}
WORDS = ("kettle", "lantern", "violet", "harbor", "meadow", "copper", "quartz", "saffron", "tundra", "willow")


def rename(rec, env):
    """A bundled record as AgentTraj-L holds it: only item_id and conversations, the item id with the file's prefix
    and the record's own task number."""
    from trajectory import split_item_id
    assert split_item_id(rec["item_id"])[0] == env, rec["item_id"]
    return {"conversations": rec["conversations"], "item_id": f"{FILES[env]}_{split_item_id(rec['item_id'])[1]}"}


def synthetic(env, task, rng):
    """A made-up trajectory of `env` in AgentTraj-L's shape: instruction, ack, then 2-4 steps."""
    from envs import env_class, protocol
    obs, actions = SYNTHETIC[env]
    word = rng.choice(WORDS)
    instruction = protocol.INSTRUCTION.get(env, f"You are an agent that answers questions about {env} data. "
                                                "Answer with Thought: and Action:.")
    ack = env_class(env).ack if env in protocol.INSTRUCTION else "Ok."
    conv = [{"from": "human", "loss": None, "value": instruction}, {"from": "gpt", "loss": False, "value": ack},
            {"from": "human", "loss": None, "value": obs.format(word)}]
    for t in range(rng.randint(2, 4)):
        if t:
            conv.append({"from": "human", "loss": None, "value": f"Observation: {rng.choice(WORDS)} {t}"})
        act = actions[t % len(actions)].format(word)
        conv.append({"from": "gpt", "loss": True,
                     "value": f"Thought:\nI think the next step towards the {word} is this.\n\nAction:\n{act}"})
    return {"conversations": conv, "item_id": f"{FILES[env]}_{task}"}


def write_agenttraj(folder, n_per_env=3, envs=tuple(FILES), seed=0):
    """Write one AgentTraj-L file per env of `envs` into `folder`: {env: path}. Bundled envs get their first
    `n_per_env` trajectories of data/<env>_train.jsonl, the others `n_per_env` synthetic ones (task ids 0, 1, ...)."""
    from trajectory import read_records
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for env in envs:
        if env in BUNDLED:
            recs = [rename(r, env) for r in read_records(os.path.join(ROOT, "data", f"{env}_train.jsonl"))]
            recs = recs[:n_per_env]
        else:
            recs = [synthetic(env, task, rng) for task in range(n_per_env)]
        paths[env] = os.path.join(str(folder), f"{FILES[env]}_train.json")
        with open(paths[env], "w", encoding="utf-8") as f:
            json.dump(recs, f, indent=4, ensure_ascii=False)  # one JSON list, as published
    return paths


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="write AgentTraj-L-shaped JSON lists (our own fixture)")
    ap.add_argument("out", help="folder to write <prefix>_train.json into")
    ap.add_argument("--n-per-env", type=int, default=3, help="trajectories per env file")
    a = ap.parse_args()
    for env, path in write_agenttraj(a.out, a.n_per_env).items():
        print(f"{path}: {a.n_per_env} trajectories of {env}")
