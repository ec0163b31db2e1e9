"""--chat-template-kwargs: the same template variables for every render of the chat template, in train.py,
perplexity.py, evaluate.py and value_estimate.py, kept in each run's settings and refused on a rerun that differs.

The tiny Qwen template here grows a Qwen3-style switch: with enable_thinking false, every assistant turn is
preceded by an empty think block (tokens the model is trained and evaluated with)."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.tiny import QWEN25_TEMPLATE, make_records, save_tiny, tiny_tokenizer

PY = sys.executable
NO_THINK = '{"enable_thinking": false}'
THINK_TEMPLATE = QWEN25_TEMPLATE.replace(
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}",
    "{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.role == 'assistant' and enable_thinking is defined and not enable_thinking %}"
    "{{- '<think></think>' }}{%- endif %}"
    "{{- message.content + '<|im_end|>' + '\\n' }}")
assert THINK_TEMPLATE != QWEN25_TEMPLATE


def thinking_tokenizer():
    tok = tiny_tokenizer("qwen")
    tok.chat_template = THINK_TEMPLATE
    return tok


def test_the_kwargs_reach_every_render():
    import agent
    import trajectory
    rec = make_records(1, seed=1, min_steps=2, max_steps=2)[0]
    plain = trajectory.tokenize_record(rec, thinking_tokenizer())
    tok = trajectory.use_template_kwargs(thinking_tokenizer(), trajectory.template_kwargs(NO_THINK))
    off = trajectory.tokenize_record(rec, tok)
    assert "<think></think>" not in tok.decode(plain["input_ids"])
    assert tok.decode(off["input_ids"]).count("<think></think>") == 3  # "Ok." and the two steps
    def loss_text(t):
        return tok.decode([i for i, label in zip(t["input_ids"], t["labels"]) if label != -100])
    assert loss_text(plain) == loss_text(off)  # the loss tokens are the same turns' content either way
    # the agent's prompt: the template variables apply to the generation prompt's rendering too
    conv = rec["conversations"][:3]
    assert "<think></think>" in tok.decode(agent.prompt_ids(tok, conv))
    assert "<think></think>" not in tok.decode(agent.prompt_ids(thinking_tokenizer(), conv))
    for bad, says in (("{nope", "not JSON"), ("[1]", "must be a JSON object")):
        with pytest.raises(ValueError, match=says):
            trajectory.template_kwargs(bad)


def test_a_served_model_gets_them_as_vllms_chat_template_kwargs():
    import agent
    policy = agent.make_policy("openai", model="served", base_url="http://127.0.0.1:9/v1",
                               template_kwargs={"enable_thinking": False})
    assert policy.fields(0.0, 8)["extra_body"]["chat_template_kwargs"] == {"enable_thinking": False}
    assert "chat_template_kwargs" not in agent.make_policy("openai", model="served").fields(0.0, 8)["extra_body"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = save_tiny(tmp_path_factory.mktemp("think") / "qwen", "qwen")
    tok = thinking_tokenizer()
    tok.save_pretrained(folder)
    return folder


def run(*argv):
    return subprocess.run([PY, *map(str, argv)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"})


def test_train_keeps_them_and_refuses_a_resume_without_them(model, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_records(2, seed=3)))
    out = tmp_path / "run"
    common = ["train.py", "--data", data, "--model", model, "--output", out, "--batch-size", "2", "--epochs", "2",
              "--max-length", "512", "--dtype", "float32"]
    r = run(*common, "--chat-template-kwargs", NO_THINK, "--stop-after", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.load(open(out / "config.json"))["chat_template_kwargs"] == {"enable_thinking": False}
    r = run(*common, "--resume")
    assert r.returncode == 1 and "chat_template_kwargs" in r.stderr, r.stderr[-3000:]
    r = run(*common, "--resume", "--chat-template-kwargs", '{"enable_thinking":false}')  # the same, spelt otherwise
    assert r.returncode == 0, r.stderr[-3000:]
    r = run(*common[:-2], "--chat-template-kwargs", "[1]", "--output", tmp_path / "bad")
    assert r.returncode == 1 and "must be a JSON object" in r.stderr and not (tmp_path / "bad").exists()


def test_perplexity_evaluate_and_value_estimation_keep_them(model, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_records(2, seed=3)))
    ppl = tmp_path / "ppl.jsonl"
    r = run("perplexity.py", "--input", data, "--output", ppl, "--model", model, "--chat-template-kwargs", NO_THINK)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.load(open(f"{ppl}.config.json"))["chat_template_kwargs"] == {"enable_thinking": False}
    r = run("perplexity.py", "--input", data, "--output", ppl, "--model", model)
    assert r.returncode != 0 and "chat_template_kwargs" in r.stderr
    res = tmp_path / "maze.jsonl"
    r = run("evaluate.py", "--env", "maze", "--policy", "hf", "--model", model, "--tasks", "0:1", "--max-new-tokens",
            "4", "--output", res, "--chat-template-kwargs", NO_THINK)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.load(open(f"{res}.config.json"))["chat_template_kwargs"] == {"enable_thinking": False}
    r = run("evaluate.py", "--env", "maze", "--policy", "hf", "--model", model, "--tasks", "0:2", "--max-new-tokens",
            "4", "--output", res)
    assert r.returncode != 0 and "chat_template_kwargs" in r.stderr
    import trajectory
    maze = [json.dumps(r) for r in trajectory.read_records(os.path.join(ROOT, "data", "maze_train.jsonl"))[:1]]
    (tmp_path / "maze_train.jsonl").write_text("\n".join(maze) + "\n")
    val = tmp_path / "value.jsonl"
    r = run("value_estimate.py", "--input", tmp_path / "maze_train.jsonl", "--env", "maze", "--policy", "hf",
            "--model", model, "--rollouts", "1", "--max-new-tokens", "4", "--output", val,
            "--chat-template-kwargs", NO_THINK)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.load(open(f"{val}.config.json"))["chat_template_kwargs"] == {"enable_thinking": False}
