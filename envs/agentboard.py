"""AgentBoard's files, read where AgentBoard's own setup puts them (Ma et al. 2024, github.com/hkust-nlp/AgentBoard):
the held-out Jericho and PDDL envs (envs/jericho.py, envs/pddl.py) read their games, problems and labels from here.

    export ATLAS_AGENTBOARD_DATA=/path/to/AgentBoard/data     # or evaluate.py --agentboard-data DIR

The folder is AgentBoard's data folder, unpacked from data.tar.gz of huggingface.co/datasets/hkust-nlp/agentboard
inside a clone of AgentBoard's code, as AgentBoard's README lays it out (the clone's root works too):

    AgentBoard/                                    a clone of github.com/hkust-nlp/AgentBoard
      data/                                        ATLAS_AGENTBOARD_DATA
        jericho/test.jsonl                         one label line per game: "subgoals", "difficulty" (+ "goal")
        jericho/z-machine-games-master/jericho-game-suite/<game>.z5 (.z8)     the story files
        pddl/test.jsonl                            one label line per problem: "difficulty"
      agentboard/environment/pddl_env/pddlgym/pddl/<game>.pddl, <game>/*.pddl    the PDDL domains and problems
      agentboard/environment/jericho_env.py        Jericho's goal and first-observation tables (game_goals,
                                                   game_init_obs), read as data, never imported

Nothing of AgentBoard's is shipped here; tests/agentboard_fixture.py writes a small folder of our own in this layout.
"""
import json
import os

ENVS = ("jericho", "pddl")  # the envs that read AgentBoard's folder
ENV_VAR = "ATLAS_AGENTBOARD_DATA"
DATA_URL = "https://huggingface.co/datasets/hkust-nlp/agentboard (data.tar.gz)"
CODE_URL = "https://github.com/hkust-nlp/AgentBoard"


def folders(env):
    """(data folder, AgentBoard's code root) from ATLAS_AGENTBOARD_DATA; ValueError in one line when it is not set
    or is no folder. DIR may be the data folder (its parent is the clone's root) or the clone's root."""
    path = os.environ.get(ENV_VAR)
    if not path:
        raise ValueError(f"{env}: needs AgentBoard's data: --agentboard-data DIR or {ENV_VAR}=DIR, DIR = AgentBoard's "
                         f"data folder ({DATA_URL}, unpacked inside a clone of {CODE_URL})")
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"{env}: {ENV_VAR}={path}: no such folder (AgentBoard's data: {DATA_URL})")
    if os.path.isdir(os.path.join(path, "data")) and not os.path.isdir(os.path.join(path, env)):
        return os.path.join(path, "data"), path
    return path, os.path.dirname(path)


def need(env, path, what, where):
    """`path` itself, or ValueError in one line naming it, what it is and where AgentBoard publishes it."""
    if not os.path.exists(path):
        raise ValueError(f"{env}: {path} not found: {what} ({where})")
    return path


def read_labels(env, path, required):
    """AgentBoard's label file (JSONL, one object per task, in task order); every line must have the keys
    `required`. Errors name the file and the line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {n}: not valid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}: line {n}: not a JSON object")
            missing = [k for k in required if k not in rec]
            if missing:
                raise ValueError(f"{path}: line {n}: no {', '.join(repr(k) for k in missing)} ({env} label lines "
                                 f"have {', '.join(required)})")
            out.append(rec)
    if not out:
        raise ValueError(f"{path}: no label lines")
    return out


def task(env, tasks, task_id):
    """tasks[task_id], or ValueError in one line naming the env and the valid range."""
    task_id = int(task_id)
    if not 0 <= task_id < len(tasks):
        raise ValueError(f"{env} task id {task_id} out of range 0..{len(tasks) - 1}")
    return tasks[task_id]
