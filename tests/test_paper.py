"""scripts/paper.sh (the paper's driver, which demo.sh runs at laptop size) end to end at its smallest size, in one
run and its rerun: the paper's defaults (every selector, value estimation included; the five built-in held-in envs
and pddl held out; Table 6 on BabyAI and Maze) on AgentTraj-L-shaped files (tests/agenttraj.py: one JSON list per
env, prefixed ids such as lmrlgym_maze_1001), one trajectory per env, one test task per env, one epoch; two tiny
backbones (Table 7, Figure 2), single-task models on BabyAI and Maze (Table 4) and BabyAI with a second stand-in
oracle (Table 5). The report must print Tables 1-7 and write Figure 2; a rerun must redo nothing.
PLAN=1 must print the trainings the run then makes, name what is missing, and write and run nothing. A selection
with no loss token within MAX_LENGTH is a loud skip of its row, not a failure."""
import json
import os
import subprocess
import sys

import pytest

from tests import oracle_server
from tests.agentboard_fixture import make as agentboard_data
from tests.agenttraj import write_agenttraj
from tests.tiny import save_tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENVS = ["babyai", "maze", "sciworld", "wordle", "textcraft", "pddl"]
MAIN = ["complete", "random@0.3", "perplexity@0.3", "critical@0.3", "noncritical@0.3"]
SINGLE = {"babyai": ["critical@0.3", "value", "oracle2-critical@0.3"], "maze": ["critical@0.3", "value"]}


def _run(env):
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", "paper.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1500)


def _episodes(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _files(folder):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs)


def _planned_trainings(stdout):
    """The folders of the plan's train section ("  train/complete: 5 records, ...")."""
    section = stdout.split("\ntrain: ", 1)[1].split("\neval", 1)[0]
    return sorted(line.split(":")[0].strip() for line in section.splitlines()[1:] if " records" in line)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paper")
    qwen, llama = save_tiny(tmp / "qwen", "qwen"), save_tiny(tmp / "llama", "llama")
    files = write_agenttraj(tmp / "AgentTraj-L", n_per_env=2)
    pddl = agentboard_data(tmp, jericho=False)  # pddl (held out) plays AgentBoard's problems: our own small ones
    srv, srv2 = oracle_server.start(), oracle_server.start()
    out = tmp / "out"
    # the oracle is waited for as demo.sh's is (ORACLE_READY): here on the stand-in, already up
    (tmp / "oracle").mkdir()
    (tmp / "oracle" / "oracle_server.json").write_text(json.dumps({"url": srv.url + "/v1", "pid": os.getpid()}))
    ready = f"{sys.executable} {os.path.join(ROOT, 'scripts', 'llama_oracle.py')} wait --dir {tmp / 'oracle'}"
    env = {**os.environ, "OUT": str(out), "MODEL": qwen, "BACKBONES": f"{qwen} {llama}", "PY": sys.executable,
           "TRAIN_DATA": " ".join(sorted(files.values())), "N_TRAIN": "1", "N_EVAL": "1",
           "RATIOS": "0.3", "RANDOM_RATIOS": "0.3", "ORACLE_URL": srv.url + "/v1", "ORACLE_MODEL": "stand-in",
           "OPENAI_API_KEY": "sk-test", "ORACLE_ARGS": "--concurrency 2", "ORACLE_READY": ready,
           "ORACLE2_URL": srv2.url + "/v1", "ORACLE2_MODEL": "stand-in-70b",
           "TABLE4_ENVS": "babyai maze", "TABLE5_ENVS": "babyai", "VALUE_ARGS": "--rollouts 1",
           "NPROC": "1", "BATCH": "2", "EPOCHS": "1", "MAX_LENGTH": "4096", "MAX_NEW_TOKENS": "8",
           "MAX_CONTEXT": "2048", "EVAL_CONCURRENCY": "1", "EVAL_PARALLEL": "0", "TABLE6_N": "1",
           "OMP_NUM_THREADS": "1", "ATLAS_AGENTBOARD_DATA": pddl, "TASKS_pddl": "0:1"}
    plan = _run({**env, "PLAN": "1"})
    plan_requests = len(srv.log) + len(srv2.log)
    first = _run(env)
    before = {f: os.path.getmtime(f) for f in _files(out / "results")}
    second = _run(env) if first.returncode == 0 else first
    changed = [f for f in _files(out / "results") if os.path.getmtime(f) != before.get(f)]
    replan = _run({**env, "PLAN": "1"}) if first.returncode == 0 else first
    srv.shutdown()
    srv2.shutdown()
    return out, first, second, dict(plan=plan, plan_requests=plan_requests, replan=replan, changed=changed)


def test_driver_finishes(run):
    out, first, second, _ = run
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]


def test_every_row_trained_and_evaluated(run):
    out, first, _, _ = run
    for label in MAIN:  # the main backbone: today's paths and labels
        assert (out / "train" / label / "final" / "config.json").exists(), label
    for label in MAIN + ["base"]:
        for env in ENVS:
            eps = _episodes(out / "results" / f"{label}_{env}.jsonl")
            assert len(eps) == 1 and eps[0]["env"] == env and eps[0]["backbone"] == "qwen", (label, env, eps)
    for label in ["complete", "critical@0.3", "base"]:  # the other backbone: Table 7's rows, on the same selections
        for env in ENVS:
            eps = _episodes(out / "backbones" / "llama" / "results" / f"{label}_{env}.jsonl")
            assert len(eps) == 1 and eps[0]["backbone"] == "llama", (label, env, eps)
    assert not (out / "backbones" / "llama" / "train" / "random@0.3").exists()  # not in BACKBONE_ROWS


def test_value_estimation_gets_the_mixed_set(run):
    out, first, _, _ = run
    for env in ("babyai", "maze"):
        recs = _episodes(out / "select" / f"value_{env}.jsonl")
        assert len(recs) == 1 and recs[0]["selection"]["method"] == "value", recs
    assert _episodes(out / "select" / "value_maze.jsonl")[0]["item_id"].startswith("lmrlgym_maze_")


def test_single_task_models_name_their_env_and_selector(run):
    out, _, _, _ = run
    for env, labels in SINGLE.items():
        for label in labels:
            sel = json.load(open(out / "single" / env / "train" / label / "final" / "selection.json"))
            assert sel["train_envs"] == [env] and sel["backbone"] == "qwen", (env, label, sel)
            assert sel["model"] == {"critical@0.3": "stand-in", "value": None,
                                    "oracle2-critical@0.3": "stand-in-70b"}[label], sel
            eps = _episodes(out / "single" / env / "results" / f"{label}_{env}.jsonl")  # its own env only
            assert len(eps) == 1 and eps[0]["selection"]["train_envs"] == [env], eps
        assert sorted(os.listdir(out / "single" / env / "results")) == \
            sorted(f"{label}_{env}.jsonl{x}" for label in labels for x in ("", ".config.json"))


def test_table6_on_prefixed_maze_and_babyai(run):
    out, _, _, _ = run
    for env, prefix in (("maze", "lmrlgym_maze_"), ("babyai", "babyai_")):
        sel = _episodes(out / "table6" / f"{env}_selection.jsonl")
        eps = _episodes(out / "table6" / f"{env}.jsonl")
        assert len(sel) == 1 and sel[0]["item_id"].startswith(prefix), sel
        assert sum(e.get("start") is None for e in eps) == 1
        assert sorted(e["start"] for e in eps if e.get("start") is not None) == sel[0]["critical_steps"]


def test_report_holds_tables_1_to_7_and_figure_2(run):
    out, _, _, _ = run
    report = (out / "report.txt").read_text()
    for title in ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "Table 6", "Table 7", "Figure 2"):
        assert title in report, (title, report)
    t5 = report.split("Table 5")[1].split("Table 6")[0]
    assert "stand-in-70b" in t5 and "stand-in" in t5.replace("stand-in-70b", ""), t5
    assert "llama" in report.split("Table 7")[1], report
    assert (out / "table1.png").stat().st_size > 0 and (out / "table1_figure2.png").stat().st_size > 0
    shares = (out / "shares.txt").read_text()
    assert "maze" in shares and "critical@0.3" in shares


def test_rerun_redoes_nothing(run):
    _, _, second, info = run
    trainings = len(MAIN) + sum(map(len, SINGLE.values())) + 2
    assert second.stdout.count("final: exists") == trainings, second.stdout[-3000:]
    assert "torchrun" not in second.stdout and not info["changed"], info["changed"]


def test_plan_lists_what_the_run_trains_and_spends_nothing(run):
    out, _, _, info = run
    plan, replan = info["plan"], info["replan"]
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    made = sorted(os.path.relpath(os.path.dirname(os.path.dirname(p)), out)
                  for p in map(str, out.glob("**/train/*/final/config.json")))
    assert _planned_trainings(plan.stdout) == made, (plan.stdout, made)
    assert info["plan_requests"] == 0  # select.py --dry-run asks the oracle nothing
    assert f"{len(made)} trainings to run" in plan.stdout
    # every env: 5 rows + base of qwen, 2 rows + base of llama; babyai and maze: their single-task models too
    evals = plan.stdout.split("\neval")[1]
    for env, n in (("babyai", 12), ("maze", 11), ("sciworld", 9), ("pddl", 9)):
        assert f"  {env}: 1 tasks x {n} models = {n} episodes" in evals, (env, evals)
    assert "missing: nothing" in plan.stdout
    # on the finished run: everything is done, nothing would be sent
    assert replan.returncode == 0 and "0 trainings to run" in replan.stdout, replan.stdout
    assert "used by its trained model: no request" in replan.stdout


def test_plan_names_what_is_missing_and_writes_nothing(tmp_path):
    model = save_tiny(tmp_path / "qwen", "qwen")
    before = _files(tmp_path)
    env = {**os.environ, "PLAN": "1", "OUT": str(tmp_path / "out"), "MODEL": model, "PY": sys.executable,
           "BACKBONES": f"{model} {tmp_path / 'Mistral-7B-Instruct-v0.3'}", "ENV_SERVERS": "webshop=http://127.0.0.1:9",
           "TRAIN_ENVS": "maze webshop", "TASKS_webshop": "0:3", "N_TRAIN": "2", "OPENAI_API_KEY": "sk-test",
           "ORACLE_URL": "http://127.0.0.1:9/v1"}
    env.pop("ATLAS_AGENTBOARD_DATA", None)
    plan = _run(env)
    assert plan.returncode == 1, plan.stdout + plan.stderr
    missing = plan.stdout.split("\nmissing (")[1]
    assert f"model folder {tmp_path / 'Mistral-7B-Instruct-v0.3'}: no config.json" in missing, missing
    assert "env webshop: its server http://127.0.0.1:9 does not answer" in missing, missing
    assert "ORACLE_URL http://127.0.0.1:9/v1 does not answer" in missing, missing
    assert "data/webshop_train.jsonl: no such file" in missing, missing
    assert "env pddl: cannot be made here: pddl: needs AgentBoard's data" in missing, missing  # no data folder
    assert _files(tmp_path) == before  # no OUT, nothing else


def test_a_row_with_nothing_to_train_is_a_loud_skip(tmp_path):
    model = save_tiny(tmp_path / "qwen", "qwen")
    env = {**os.environ, "OUT": str(tmp_path / "out"), "MODEL": model, "PY": sys.executable,
           "TRAIN_ENVS": "maze", "HELDOUT_ENVS": "wordle", "N_TRAIN": "1", "N_EVAL": "1", "SELECTORS": "random",
           "RANDOM_RATIOS": "0.3", "EVAL_BASE": "0", "NPROC": "1", "BATCH": "1", "EPOCHS": "1",
           "MAX_LENGTH": "16", "OMP_NUM_THREADS": "1"}  # 16 tokens: no step's loss tokens fit
    run = _run(env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    warnings = (tmp_path / "out" / "warnings.txt").read_text()
    for label in ("complete", "random@0.3"):
        assert f"no {label} row: train.py: nothing to train:" in warnings, warnings
    assert not (tmp_path / "out" / "train" / "complete").exists()


def test_the_bundled_data_at_the_papers_defaults(tmp_path):
    """The driver as a user first runs it: no TRAIN_DATA (the bundled data/<env>_train.jsonl of the five built-in
    held-in envs), every selector, Table 6 on BabyAI and Maze, Tables 4 and 5 at their defaults (weather and
    alfworld have no server here: loud skips of their cells, not failures), one oracle; smallest sizes."""
    model = save_tiny(tmp_path / "qwen", "qwen")
    pddl = agentboard_data(tmp_path, jericho=False)
    srv = oracle_server.start()
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "MODEL": model, "PY": sys.executable, "N_TRAIN": "1", "N_EVAL": "1",
           "RATIOS": "0.3", "RANDOM_RATIOS": "0.3", "ORACLE_URL": srv.url + "/v1", "ORACLE_MODEL": "stand-in",
           "OPENAI_API_KEY": "sk-test", "ORACLE_ARGS": "--concurrency 2", "VALUE_ARGS": "--rollouts 1",
           "NPROC": "1", "BATCH": "2", "EPOCHS": "1", "MAX_LENGTH": "4096", "MAX_NEW_TOKENS": "8",
           "MAX_CONTEXT": "2048", "EVAL_CONCURRENCY": "1", "TABLE6_N": "1", "OMP_NUM_THREADS": "1",
           "ATLAS_AGENTBOARD_DATA": pddl, "TASKS_pddl": "0:1"}
    try:
        r = _run(env)
    finally:
        srv.shutdown()
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    for label in MAIN:
        for e in ENVS:
            assert len(_episodes(out / "results" / f"{label}_{e}.jsonl")) == 1, (label, e)
    for e in ("babyai", "maze"):
        assert _episodes(out / "table6" / f"{e}_selection.jsonl")[0]["item_id"].startswith(f"{e}_")
    warnings = (out / "warnings.txt").read_text()
    assert "weather" in warnings and "alfworld" in warnings, warnings  # Tables 4/5's served envs: loud skips
    assert (out / "single" / "babyai" / "train" / "value" / "final" / "config.json").exists()
    report = (out / "report.txt").read_text()
    assert "Table 4" in report and "Table 1" in report
