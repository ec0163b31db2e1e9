"""analyze.py: per-env shares of steps and of loss tokens (counted by hand on a tiny tokenizer), the trajectories
whose budget is the minimum of one step, overlaps, and one line for bad input."""
import json
import subprocess
import sys

import pytest

import analyze
from tests.conftest import ROOT
from tests.tiny import _tokenizer_dir, tiny_tokenizer
from runs import write_jsonl
from trajectory import budget, step_indices, with_selection


def record(item_id, actions):
    conv = [{"from": "human", "loss": None, "value": "Your task: go to the red door"},
            {"from": "gpt", "loss": False, "value": "Ok."},
            {"from": "human", "loss": None, "value": "Observation: a room"}]
    for a in actions:
        conv += [{"from": "gpt", "loss": True, "value": f"Thought: I need to {a}\nAction: {a}"},
                 {"from": "human", "loss": None, "value": "Observation: nothing happens"}]
    return {"item_id": item_id, "conversations": conv[:-1]}


RECS = [record("maze_1", ["north", "east", "take key", "open door", "look"]),          # T=5: k = 1 at m 0.3 (1.5)
        record("maze_2", ["west", "south"]),                                           # T=2: m T = 0.6, raised to 1
        record("lmrlgym_maze_3", ["north"] * 7),                                       # T=7: k = 2
        record("wordle_4", ["apple", "crane", "sound", "pick up blue ball", "put", "done",
                            "look", "search", "back", "next"])]                        # T=10: k = 3


def selection(tmp_path, name="sel.jsonl"):
    sel = []
    for rec in RECS:
        steps = step_indices(rec)
        k = budget(len(steps), 0.3)
        sel.append(with_selection(rec, steps[-k:], {"method": "random", "ratio": 0.3, "budget": k}))
    write_jsonl(tmp_path / name, sel)
    return sel


@pytest.mark.parametrize("family", ["qwen", "llama"])
def test_token_shares_against_a_hand_count(tmp_path, family):
    sel = selection(tmp_path)
    tok = tiny_tokenizer(family)
    eot = 1  # <|im_end|> / <|eot_id|>: the model learns to stop; the role header is not trained

    def hand(rec, turns):  # each turn's content on its own (templates put it after a newline) + the end token
        return sum(len(tok(rec["conversations"][i]["value"], add_special_tokens=False)["input_ids"]) + eot
                   for i in turns)

    res = analyze.main([str(tmp_path / "sel.jsonl"), "--tokenizer", _tokenizer_dir(family, 1024)])
    envs = {e["env"]: e for e in res["envs"]}
    assert set(envs) == {"maze", "wordle"}  # lmrlgym_maze_3 is maze
    for env, recs in (("maze", sel[:3]), ("wordle", sel[3:])):
        loss = sum(hand(r, r["critical_steps"]) for r in recs)
        full = sum(hand(r, r["steps"]) for r in recs)
        assert envs[env]["loss_tokens"] == loss and envs[env]["step_tokens"] == full
        assert envs[env]["share_tokens"] == pytest.approx(loss / full)
    assert envs["maze"]["selected"] == 1 + 1 + 2 and envs["maze"]["steps"] == 5 + 2 + 7
    assert envs["maze"]["share_selected"] == pytest.approx(4 / 14)
    assert envs["maze"]["budget_one"] == 2 and envs["maze"]["budget_raised_to_one"] == 1
    assert envs["wordle"]["budget_one"] == 0 and envs["wordle"]["share_selected"] == pytest.approx(0.3)
    assert res["files"][0]["ratio"] == [0.3] and res["files"][0]["trajectories"] == 4


def test_text_report_plain_data_and_pairs(tmp_path, capsys):
    sel = selection(tmp_path)
    write_jsonl(tmp_path / "data.jsonl", RECS)
    write_jsonl(tmp_path / "sel.jsonl.errors.jsonl", [{"item_id": "maze_9", "reason": "x"}])
    res = analyze.main([str(tmp_path / "sel.jsonl"), str(tmp_path / "data.jsonl"),
                        str(tmp_path / "sel.jsonl.errors.jsonl"), "--json", str(tmp_path / "a.json")])
    out = capsys.readouterr().out
    assert "errors file of select.py, not a selection: left out" in out
    plain = res["files"][1]
    assert plain["method"] == "complete" and plain["share_selected"] == 1.0 and plain["ratio"] == [1.0]
    assert res["pairs"][0]["common"] == 4
    row = next(l for l in out.splitlines() if l.split()[:1] == ["maze"])
    assert row.split()[1:4] == ["random", "0.3", "3"] and "2 (1)" in row
    assert json.load(open(tmp_path / "a.json"))["envs"][0]["env"] == "maze"
    assert sum(len(r["critical_steps"]) for r in sel) == res["files"][0]["selected"]


@pytest.mark.parametrize("kind,message", [
    ("folder", "is a folder"),
    ("missing", "no such file"),
    ("results", "missing field 'conversations'"),
    ("mixed", "has no 'critical_steps' unlike the records before it"),
    ("badjson", "not valid JSON"),
    ("tokenizer", "--tokenizer"),
])
def test_bad_input_one_line(tmp_path, kind, message):
    selection(tmp_path)
    path = tmp_path / "in.jsonl"
    extra = []
    if kind == "folder":
        path = tmp_path
    elif kind == "results":
        path.write_text(json.dumps({"item_id": "maze_0", "env": "maze", "success": 1}) + "\n")
    elif kind == "mixed":
        path.write_text(open(tmp_path / "sel.jsonl").read() + json.dumps(record("maze_8", ["up"])) + "\n")
    elif kind == "badjson":
        path.write_text('{"item_id": "maze_0", \n')
    elif kind == "tokenizer":
        path, extra = tmp_path / "sel.jsonl", ["--tokenizer", str(tmp_path / "nomodel")]
    run = subprocess.run([sys.executable, "analyze.py", str(path), *extra], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
