"""Jericho (AgentBoard, Ma et al. 2024): text adventure games, held out in the paper and scored by progress rate.
Facts only: this project has no client for it yet, so evaluate.py refuses to run it, and --report shows results
made elsewhere (with a "progress" field, or the reward as the progress rate) under its Table-1 column. A client
is this class with task_ids, instruction, reset, step and close (envs/base.py), and builtin = True.
"""
from envs.base import Env


class JerichoEnv(Env):
    name, split, score, builtin = "jericho", "held-out", "progress", False

    def __init__(self, *args, **kwargs):
        raise ValueError("jericho: no client in this project yet (AgentBoard's Jericho games are scored from "
                         "result files made elsewhere: evaluate.py --report)")
