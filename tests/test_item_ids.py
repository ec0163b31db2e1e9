"""The one item-id rule (trajectory.split_item_id, trajectory.env_task): AgentGym's prefixes, plain ids, a record's
own task_id, and the ids it refuses; every stage that names an env by its records uses it (no second copy)."""
import os
import re
import subprocess

import pytest

import tasks
import trajectory
from tests.conftest import ROOT
from trajectory import env_task, split_item_id


@pytest.mark.parametrize("item_id,want", [
    ("maze_3", ("maze", 3)),
    ("lmrlgym_maze_12", ("maze", 12)),          # LMRL-Gym's envs in AgentTraj-L / AgentEval
    ("lmrlgym_wordle_3", ("wordle", 3)),
    ("tool_weather_5", ("weather", 5)),         # AgentBoard's tool envs
    ("tool_movie_7", ("movie", 7)),
    ("tool_todo_2", ("todo", 2)),
    ("tool_academia_0", ("academia", 0)),
    ("weather_5", ("weather", 5)),              # the same env without the prefix (our own results' ids)
    ("webshop_5238", ("webshop", 5238)),
    ("alfworld_4", ("alfworld", 4)),
    ("babyai_0", ("babyai", 0)),
    ("sqlgym_9", ("sqlgym", 9)),                # an env this project has no class for: still read, the caller decides
    ("my_env_3", ("my_env", 3)),                # a fork's env with an underscore in its name
    ("tool_5", ("tool", 5)),                    # a prefix alone is an env name, not a prefix
    ("maze_007", ("maze", 7)),
])
def test_split_item_id(item_id, want):
    assert split_item_id(item_id) == want


@pytest.mark.parametrize("item_id", [
    "maze", "maze_", "_3", "maze_-1", "maze_3 ", " maze_3", "Maze_3", "maze_3a", "maze_x", "webshop_0_3",
    "maze_\u0663",  # an Arabic-Indic digit: str.isdigit() is True, but it is no task number
    "maze__3", "trial_T20190909_pick", "", 12, None, True, ["maze_3"],
])
def test_split_item_id_refuses_in_one_line(item_id):
    with pytest.raises(ValueError) as e:
        split_item_id(item_id)
    assert "\n" not in str(e.value) and repr(item_id) in str(e.value)


def test_env_task_prefers_the_records_task_id():
    assert env_task({"item_id": "lmrlgym_maze_3"}) == ("maze", 3)
    assert env_task({"item_id": "lmrlgym_maze_3", "task_id": 1007}) == ("maze", 1007)
    assert env_task({"item_id": "tool_weather_3", "task_id": "12"}) == ("weather", 12)
    for bad in (True, -1, "x", 1.5, None, "1 "):
        with pytest.raises(ValueError, match="field 'task_id' must be a non-negative integer"):
            env_task({"item_id": "maze_3", "task_id": bad})
    with pytest.raises(ValueError, match="is not <env>_<task id>"):  # the env still comes from the item_id
        env_task({"item_id": "custom", "task_id": 3})


def test_task_files_use_the_rule(tmp_path):
    assert tasks.split_item_id is trajectory.split_item_id  # re-exported, not a copy
    f = tmp_path / "tasks.jsonl"
    f.write_text('{"item_id": "lmrlgym_maze_4"}\n{"item_id": "maze_9", "task_id": 2}\n{"item_id": "babyai_1"}\n')
    ids, other = tasks.read_task_file(str(f), "maze")
    assert ids == [4, 2] and other == {"babyai": 1}
    f.write_text('{"item_id": "maze_x"}\n')
    with pytest.raises(trajectory.RecordError, match="tasks.jsonl: line 1: not a task id"):
        tasks.read_task_file(str(f), "maze")


def test_one_definition_of_the_rule():
    """No stage or script carries its own copy of the rule (a rsplit/rpartition of an item id on "_")."""
    files = [f for f in os.listdir(ROOT) if f.endswith(".py")]
    files += [os.path.join("scripts", f) for f in os.listdir(os.path.join(ROOT, "scripts")) if f.endswith(".py")]
    defs, copies = [], []
    for f in files:
        text = open(os.path.join(ROOT, f), encoding="utf-8").read()
        defs += [f for _ in re.finditer(r"^def split_item_id\(", text, re.M)]
        copies += [f"{f}: {m.group(0)}" for m in re.finditer(r"item_id[\"'\]\)]*\)?\.r(?:split|partition)\(\"_\"",
                                                            text)]
    assert defs == ["trajectory.py"] and copies == []
    out = subprocess.run(["grep", "-n", r"def split_item_id", *files], cwd=ROOT, capture_output=True, text=True)
    assert len(out.stdout.splitlines()) == 1, out.stdout
