"""Cheap checks of the demo and benchmark plumbing (the demo itself takes ~30 min and is not run here).

- demo.sh hands scripts/paper.sh only knobs it reads, and paper.sh runs with demo.sh's values (its own trace says
  so; a misspelt knob is caught), the model where get_smollm2.py puts it, selectors paper.sh accepts, and the
  reader's overrides; paper.sh refuses a missing MODEL and an unknown selector in one line;
- paper.sh, handed demo.sh's settings with every program stubbed, issues commands that work: the data command
  writes the demo's training set and test tasks, the oracle waits for its server and then asks select.py with flags
  it accepts, evaluation runs at the protocol's limits;
- scripts/llama_oracle.py starts a server in a clean environment, waits until it answers, says why when it never
  does, and stops it;
- scripts/demo_report.py counts what a run did from the files alone: selected vs not selected per selector (errors
  file vs trajectories the oracle never reached), optimizer steps, episodes, stage times;
- bench/run_all.py has a way to read every bench/bench_*.py (a pattern in PARSE or the JSON last line), and its
  patterns pick the right number out of lines in the form the benches print; one run gives bench_train's bf16 /
  fp32 tok/s and bench_kv's KV reuse / re-prefill ratio with the number of identical greedy outputs.
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
ORACLE_URL = "http://127.0.0.1:40001/v1"  # what the stubbed `scripts/llama_oracle.py start` prints


def stub_python(path, log):
    """A `python` that logs its arguments, one call a line, and does nothing (but print the oracle's URL)."""
    path.write_text(f'#!/bin/sh\necho "$*" >> {log}\n'
                    f'[ "$1 $2" = "scripts/llama_oracle.py start" ] && echo {ORACLE_URL}\ntrue\n')
    path.chmod(0o755)


def run_demo_sh(tmp_path, **overrides):
    """Run demo.sh with everything it calls stubbed: a `python` that logs its arguments and does nothing, the venv
    already installed, and a scripts/paper.sh that saves the environment it was handed. Returns (the variables
    demo.sh exported to paper.sh, the python command lines, demo.sh's folder). No network, no model, well under a
    second."""
    home = tmp_path / "demo"
    (home / "scripts").mkdir(parents=True)
    (home / "bin").mkdir()
    shutil.copy(os.path.join(ROOT, "demo.sh"), home / "demo.sh")
    shutil.copy(os.path.join(ROOT, "requirements.txt"), home / "requirements.txt")
    venv = tmp_path / "venv"
    venv.mkdir()
    shutil.copy(os.path.join(ROOT, "requirements.txt"), venv / ".atlas-requirements")  # nothing to pip install
    stub_python(home / "bin" / "python", home / "python_calls")
    (home / "scripts" / "paper.sh").write_text(f'echo "PLAN=${{PLAN:-}}" >> {home / "paper_calls"}\n'
                                               f'[ "${{PLAN:-}}" = 1 ] || env -0 > {home / "paper_env"}\n')
    base = {"PATH": f"{home / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "VIRTUAL_ENV": str(venv)}
    subprocess.run(["bash", str(home / "demo.sh")], env={**base, **overrides}, check=True, timeout=30,
                   capture_output=True, text=True)
    handed = dict(kv.split("=", 1) for kv in (home / "paper_env").read_text().split("\0") if kv)
    exported = {k: v for k, v in handed.items() if k not in set(base) | {"PWD", "OLDPWD", "SHLVL", "_"}}
    return exported, (home / "python_calls").read_text().splitlines(), home


def paper_sh(env, *, trace=False):
    return subprocess.run(["bash"] + (["-x"] if trace else []) + [os.path.join(ROOT, "scripts", "paper.sh")],
                          capture_output=True, text=True, timeout=60, env=env)


def call(calls, prefix):
    """The argument list of the one logged python call that starts with `prefix`."""
    found = [c.split() for c in calls if c.startswith(prefix)]
    assert len(found) == 1, (prefix, calls)
    return found[0]


def flag(args, name):
    return args[args.index(name) + 1]


def test_demo_sh_hands_paper_sh_knobs_it_reads(tmp_path):
    got, calls, home = run_demo_sh(tmp_path)
    # the plan at the demo's size first (PLAN=1: scripts/plan.py), then the run with the same knobs
    assert (home / "paper_calls").read_text().split() == ["PLAN=1", "PLAN="]
    assert {"OUT", "MODEL", "ORACLE_URL", "ORACLE_READY", "N_TRAIN", "N_EVAL", "TRAIN_ENVS", "HELDOUT_ENVS",
            "SELECTORS", "NPROC", "BATCH", "MAX_CONTEXT", "TABLE6_ENVS"} <= set(got), sorted(got)
    # paper.sh's own trace up to its refusal of the missing MODEL (before it writes anything): every knob it reads
    # is assigned there, to the value it will run with
    env = {"PATH": os.environ["PATH"], **got, "MODEL": "", "OUT": str(tmp_path / "out")}
    run = paper_sh(env, trace=True)
    said = [l for l in run.stderr.splitlines() if not l.startswith("+")]
    assert run.returncode == 2 and said == ["scripts/paper.sh: set MODEL to the base model folder"], run.stderr
    assert not (tmp_path / "out").exists()
    resolved = dict(shlex.split(l[2:])[0].split("=", 1) for l in run.stderr.splitlines()
                    if l.startswith("+ ") and l[2:3].isupper() and "=" in l.split()[1])
    assert {"MODEL", "N_TRAIN", "SELECTORS", "ORACLE_URL", "ORACLE_READY"} <= set(resolved), sorted(resolved)
    # a misspelt knob would be exported and never read: paper.sh would silently run at its (paper) size
    envs = {f.split("_")[0] for f in os.listdir(os.path.join(ROOT, "data")) if f.endswith("_test_ids.txt")}
    unread = set(got) - set(resolved) - {f"TASKS_{e}" for e in envs}  # TASKS_<env>: read by name, by the data stage
    assert not unread, sorted(unread)
    assert {k: resolved[k] for k in got if k in resolved and k not in ("OUT", "MODEL")} == \
        {k: v for k, v in got.items() if k in resolved and k not in ("OUT", "MODEL")}
    # the laptop sizes, and values paper.sh can run with: selectors it accepts (it refused only the MODEL above),
    # envs with bundled data, Table 6 on envs that are trained on (its restarts come from the training set's
    # critical steps), the protocol's context and BabyAI levels that exist
    assert (got["N_TRAIN"], got["N_EVAL"], got["EVAL_CONCURRENCY"], got["NPROC"]) == ("40", "6", "6", "1"), got
    assert got["MAX_CONTEXT"] == "4096", got
    assert {int(x) for x in got["BABYAI_LEVELS"].split()} <= set(range(40)), got["BABYAI_LEVELS"]
    for env in got["TRAIN_ENVS"].split():
        assert os.path.exists(os.path.join(ROOT, "data", f"{env}_train.jsonl")), env
    for env in (got["TRAIN_ENVS"] + " " + got["HELDOUT_ENVS"]).split():
        assert os.path.exists(os.path.join(ROOT, "data", f"{env}_test_ids.txt")), env
    assert set(got["TABLE6_ENVS"].split()) <= set(got["TRAIN_ENVS"].split()), got
    assert int(got["MAX_NEW_TOKENS"]) < int(got["MAX_CONTEXT"]) <= int(got["MAX_LENGTH"]), got
    # what the reader sets wins, and the report reads the same run paper.sh wrote; the oracle is stopped at the end
    got, calls, _ = run_demo_sh(tmp_path / "again", N_TRAIN="64", N_EVAL="8", OUT="out/demo2", TRAIN_ENVS="maze wordle")
    assert (got["N_TRAIN"], got["N_EVAL"], got["EVAL_CONCURRENCY"], got["OUT"]) == ("64", "8", "8", "out/demo2"), got
    assert (f"scripts/demo_report.py --out out/demo2 --model {got['MODEL']} --n-eval 8 "
            "--train-envs maze wordle --heldout-envs wordle") in calls, calls
    assert calls[-1] == "scripts/llama_oracle.py stop --dir out/demo2/logs", calls
    # an oracle the reader names is used as it is: nothing is served
    got, calls, _ = run_demo_sh(tmp_path / "own", ORACLE_URL="http://oracle:8000/v1")
    assert got["ORACLE_URL"] == "http://oracle:8000/v1" and "ORACLE_READY" not in got, got
    assert not [c for c in calls if c.startswith("scripts/llama_oracle.py")], calls


def test_demo_serves_the_model_get_smollm2_makes(tmp_path):
    got, calls, home = run_demo_sh(tmp_path)
    # get_smollm2.py on a cache that holds its converted folder prints where the folder and the gguf are
    cache = flag(call(calls, "scripts/get_smollm2.py"), "--cache-dir")
    (home / cache / "hf").mkdir(parents=True)
    (home / cache / "hf" / "CONVERTED_FROM_GGUF").write_text("params=1\n")
    run = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "get_smollm2.py"), "--cache-dir", cache],
                         cwd=home, capture_output=True, text=True, timeout=30, check=True)
    paths = dict(w.split("=", 1) for w in run.stdout.split() if w.startswith(("hf=", "gguf=")))
    # the policy is that folder and the oracle serves that gguf, under the name select.py asks for
    start = call(calls, "scripts/llama_oracle.py start")
    assert os.path.abspath(home / got["MODEL"]) == paths["hf"], (got["MODEL"], paths)
    assert os.path.abspath(home / flag(start, "--gguf")) == paths["gguf"], (start, paths)
    assert flag(start, "--alias") == got["ORACLE_MODEL"], (start, got["ORACLE_MODEL"])
    # paper.sh asks the URL start printed, and waits for the server start launched
    assert got["ORACLE_URL"] == ORACLE_URL, got
    assert got["ORACLE_READY"] == f"python scripts/llama_oracle.py wait --dir {flag(start, '--dir')}", got


def test_paper_sh_runs_the_demo_with_commands_that_work(tmp_path):
    """paper.sh handed demo.sh's settings, with `python` stubbed: the commands it issues, then run for real."""
    got, _, _ = run_demo_sh(tmp_path)
    model, out, log = tmp_path / "model", tmp_path / "out", tmp_path / "paper_calls"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (tmp_path / "bin").mkdir()
    stub_python(tmp_path / "bin" / "python", log)
    run = paper_sh({**got, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "MODEL": str(model),
                    "OUT": str(out)})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    calls = log.read_text().splitlines()
    # the data command writes the demo's training set and test tasks
    data = call(calls, "scripts/paper_data.py")
    subprocess.run([sys.executable] + data, cwd=ROOT, check=True, capture_output=True, text=True, timeout=60,
                   env={**os.environ, "TASKS_wordle": got["TASKS_wordle"]})
    from trajectory import read_records, split_item_id
    recs = read_records(str(out / "data" / "train.jsonl"))
    levels = {int(x) for x in got["BABYAI_LEVELS"].split()}
    assert len(recs) == 40 and all(split_item_id(r["item_id"])[0] == "babyai" for r in recs)
    assert {split_item_id(r["item_id"])[1] % 40 for r in recs} <= levels
    assert (out / "data" / "babyai_tasks.txt").read_text().split() == ["520", "521", "522", "523", "524", "528"]
    assert (out / "data" / "wordle_tasks.txt").read_text().split() == ["0", "1"]
    # the oracle: first the wait for its server, then select.py with flags and a format it accepts
    wait = calls.index(got["ORACLE_READY"][len("python "):])
    oracle = [i for i, c in enumerate(calls) if c.startswith("select.py") and "--base-url" in c]
    assert len(oracle) == 1 and wait < oracle[0], calls
    select = calls[oracle[0]].split()
    assert flag(select, "--base-url") == ORACLE_URL and flag(select, "--response-format") == got["ORACLE_FORMAT"]
    dry = subprocess.run([sys.executable] + select + ["--dry-run"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert dry.returncode == 0 and "40 trajectories to select" in dry.stdout, dry.stdout + dry.stderr
    # evaluation at the protocol's limits: 4096 tokens of context and each env's own round limit
    evals = [c.split() for c in calls if c.startswith("evaluate.py --env")]
    assert sorted(flag(e, "--env") for e in evals) == ["babyai", "wordle"], calls  # the base model's row
    for e in evals:
        assert flag(e, "--max-context") == "4096" and "--max-rounds" not in e, e


def test_paper_sh_refuses_a_missing_model_in_one_line(tmp_path):
    for model, message in (("", "scripts/paper.sh: set MODEL to the base model folder"),
                           (str(tmp_path / "nomodel"),
                            f"scripts/paper.sh: MODEL={tmp_path / 'nomodel'} is not a model folder (no config.json)")):
        run = subprocess.run(["bash", os.path.join(ROOT, "scripts", "paper.sh")], capture_output=True, text=True,
                             timeout=30, env={"PATH": os.environ["PATH"], "MODEL": model, "OUT": str(tmp_path / "out")})
        assert run.returncode == 2 and run.stderr.splitlines() == [message] and run.stdout == "", run
        assert not (tmp_path / "out").exists()  # refused before anything is written


def test_paper_sh_refuses_an_unknown_selector_in_one_line(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    run = paper_sh({"PATH": os.environ["PATH"], "MODEL": str(tmp_path / "model"), "OUT": str(tmp_path / "out"),
                    "SELECTORS": "oracle randm"})
    assert run.returncode == 2 and run.stdout == "" and run.stderr.splitlines() == \
        ["scripts/paper.sh: SELECTORS: randm is none of oracle random complement perplexity value"], run
    assert not (tmp_path / "out").exists()


FAKE_SERVER = '''import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
json.dump({"argv": sys.argv[1:], "env": dict(os.environ)}, open("served.json", "w"))
if os.path.exists("crash"):
    sys.exit("fake llama_cpp.server: crashed")
class Models(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.end_headers()
        self.wfile.write(b'{"data": []}')
HTTPServer(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), Models).serve_forever()
'''


def test_llama_oracle_serves_in_a_clean_environment_waits_and_stops(tmp_path):
    # a stand-in llama_cpp.server in the working folder (python -m finds it first): it answers /v1/models
    (tmp_path / "llama_cpp" / "server").mkdir(parents=True)
    (tmp_path / "llama_cpp" / "__init__.py").write_text("")
    (tmp_path / "llama_cpp" / "server" / "__init__.py").write_text("")
    (tmp_path / "llama_cpp" / "server" / "__main__.py").write_text(FAKE_SERVER)
    oracle = [sys.executable, os.path.join(ROOT, "scripts", "llama_oracle.py")]

    def run(*args, **env):
        return subprocess.run(oracle + list(args) + ["--dir", "logs"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, env={**os.environ, **env})

    # the demo's variables reach no server setting (pydantic-settings reads the environment too)
    url = run("start", "--gguf", "m.gguf", "--alias", "smollm2", CACHE="cache", MODEL="m").stdout.strip()
    try:
        waited = run("wait")
        assert waited.returncode == 0 and waited.stdout == "", waited
        served = json.loads((tmp_path / "served.json").read_text())
        assert "CACHE" not in served["env"] and "MODEL" not in served["env"], served["env"]
        argv = served["argv"]
        assert (flag(argv, "--model"), flag(argv, "--model_alias"), flag(argv, "--n_ctx")) == \
            ("m.gguf", "smollm2", "4096"), argv
        assert url == f"http://127.0.0.1:{flag(argv, '--port')}/v1", (url, argv)
    finally:
        pid = json.loads((tmp_path / "logs" / "oracle_server.json").read_text())["pid"]
        run("stop")
    for _ in range(100):  # stopped: the process ends, and nothing is left to wait for
        if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the oracle server {pid} still runs after stop")
    waited = run("wait")
    assert waited.returncode == 1 and waited.stdout.startswith("no llama.cpp oracle was started"), waited
    # a server that dies: wait says so in one line (paper.sh warns it and leaves the oracle rows out)
    (tmp_path / "crash").write_text("")
    run("start", "--gguf", "m.gguf", "--alias", "smollm2")
    waited = run("wait")
    assert waited.returncode == 1, waited
    assert waited.stdout == "the llama.cpp oracle did not start (see logs/oracle_server.log)\n", waited
    assert "crashed" in (tmp_path / "logs" / "oracle_server.log").read_text()
    run("stop")


def _rec(item_id, n_steps):
    conv = [{"from": "human", "loss": None, "value": "instruction"}, {"from": "gpt", "loss": False, "value": "Ok."}]
    for s in range(n_steps):
        conv += [{"from": "human", "loss": None, "value": f"obs {s}"},
                 {"from": "gpt", "loss": True, "value": f"Thought: t{s}\nAction: a{s}"}]
    return {"item_id": item_id, "conversations": conv}


def _write(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def test_demo_report_counts(tmp_path):
    from trajectory import with_selection
    out = tmp_path / "demo"
    recs = [_rec("maze_1", 4), _rec("maze_2", 6), _rec("maze_3", 5)]
    _write(str(out / "data" / "train.jsonl"), recs)
    _write(str(out / "select" / "complete.jsonl"), recs)
    # random: 1 step of each; critical: only maze_2 selected (2 steps), maze_1 failed, maze_3 never reached
    _write(str(out / "select" / "random@0.3.jsonl"),
           [with_selection(r, [3], {"method": "random", "ratio": 0.3}) for r in recs])
    _write(str(out / "select" / "critical@0.3.jsonl"), [with_selection(recs[1], [3, 7], {"method": "oracle"})])
    _write(str(out / "select" / "critical@0.3.jsonl.errors.jsonl"), [{"item_id": "maze_1", "reason": "unparsable"}])
    os.makedirs(out / "train" / "complete" / "final")
    json.dump({"batch_size": 2, "n_records": 3, "n_examples": 3, "compute_dtype": "torch.bfloat16"},
              open(out / "train" / "complete" / "config.json", "w"))
    os.makedirs(out / "train" / "critical@0.3")  # the oracle selected 1 of the 3: its row trained on 1
    json.dump({"batch_size": 2, "n_records": 1, "n_examples": 1, "compute_dtype": "torch.float32"},
              open(out / "train" / "critical@0.3" / "config.json", "w"))
    os.makedirs(out / "logs")
    open(out / "logs" / "eval_complete_maze.log", "w").write(
        "hf policy: out/train/complete/final on cpu in bfloat16 (auto: the CPU has native bf16 matmul); KV on\n")
    open(out / "train" / "complete" / "final" / "config.json", "w").write("{}")
    _write(str(out / "train" / "complete" / "metrics.jsonl"), [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}])
    _write(str(out / "results" / "complete_maze.jsonl"),
           [{"label": "complete", "env": "maze", "success": 1, "reward": 1.0}])
    _write(str(out / "results" / "complete_wordle.jsonl"),
           [{"label": "complete", "env": "wordle", "success": 0, "reward": 0.0}] * 2)
    # Table 6: 2 tasks from scratch (none solved), 3 restarts (2 solved, one of them inside the replay)
    t6 = [{"label": "base", "env": "maze", "success": 0, "reward": 0.0, "start": None, "rounds": 15, "replayed": 0}] * 2
    t6 += [{"label": "base", "env": "maze", "success": 1, "reward": 1.0, "start": 5, "rounds": 4, "replayed": 2},
           {"label": "base", "env": "maze", "success": 1, "reward": 1.0, "start": 9, "rounds": 4, "replayed": 4},
           {"label": "base", "env": "maze", "success": 0, "reward": 0.0, "start": 3, "rounds": 15, "replayed": 1}]
    _write(str(out / "table6" / "maze.jsonl"), t6)
    _write(str(out / "table6" / "maze_selection.jsonl"), [with_selection(recs[1], [3, 7], {"method": "oracle"})])
    open(out / "timings.tsv", "w").write("run\t2026-01-01T00:00:00Z\nvenv\t3\nmodel\t60\ntotal\t63\n")
    open(out / "warnings.txt", "w").write("")
    run = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "demo_report.py"), "--out", str(out),
                          "--model", str(tmp_path / "nomodel"), "--n-eval", "1"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    lines = run.stdout.splitlines()
    row = {l.split()[0]: l.split() for l in lines if l[:1].strip() and l.split()[0] in
           ("complete", "random@0.3", "critical@0.3")}  # the selection table (evaluation lines are indented)
    assert row["complete"][1:5] == ["3", "3", "15", "100.0%"], row["complete"]       # 15 steps, all kept
    assert row["random@0.3"][1:5] == ["3", "3", "3", "20.0%"], row["random@0.3"]     # one step of each of 15
    assert row["critical@0.3"][1:5] == ["1", "3", "2", "33.3%"], row["critical@0.3"]  # 2 of maze_2's 6 steps
    assert [l.split()[0] for l in lines if l[:1].strip() and l.split()[0] in row] == \
        ["complete", "random@0.3", "critical@0.3"]  # the paper's order
    crit = next(l for l in lines if l.startswith("critical@0.3"))
    assert "1x unparsable" in crit and "1 not reached" in crit, crit
    _write(str(out / "select" / "critical@0.3.jsonl.errors.jsonl"),
           [{"item_id": "maze_1", "reason": "unparsable after 1 answers (1 requests): the answer is not JSON (Unterm"
                                           "inated string) (cut at --max-tokens); answer began '{'"},
            {"item_id": "maze_3", "reason": "unparsable after 1 answers (1 requests): the answer is not JSON (Expec"
                                           "ting ',') (cut at --max-tokens); answer began '{'"}])
    again = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "demo_report.py"), "--out", str(out),
                            "--model", str(tmp_path / "nomodel")], capture_output=True, text=True, check=True)
    crit = next(l for l in again.stdout.splitlines() if l.startswith("critical@0.3"))
    assert "2x the answer is not JSON, cut at --max-tokens" in crit and "not reached" not in crit, crit
    assert any("2 optimizer steps x batch 2" in l and "2.000 -> 1.500" in l for l in lines), run.stdout
    # what ran, read from the runs' own records: train.py's compute dtype, the hf policy's log line; what each row
    # trained on, and a warning that the rows differ
    assert "trained in bfloat16 and float32 (train.py's compute_dtype), evaluated in bfloat16 on cpu" in \
        run.stdout and "fp32 on CPU" not in run.stdout, run.stdout
    assert any(l.split()[:2] == ["complete", "3"] and "(3 with a loss token)" in l for l in lines), run.stdout
    assert any(l.split()[:2] == ["critical@0.3", "1"] and "NOT finished" in l for l in lines), run.stdout
    assert "!! the rows trained on different trajectories (complete 3, critical@0.3 1)" in run.stdout, run.stdout
    # Wilson intervals by hand: 1/1 -> [20.7, 100], 0/2 -> [0, 65.8]
    assert any("maze: 1/1 solved (95 % interval 21-100 %)" in l and "wordle: 0/2 solved (95 % interval 0-66 %)" in l
               for l in lines), run.stdout
    t6_line = next(l for l in lines if l.startswith("Table 6 (base, maze)"))
    assert "from scratch 0/2 solved" in t6_line and "from a critical step 2/3 solved" in t6_line, t6_line
    assert "1 ended inside the replayed expert turns" in t6_line, t6_line
    assert any(l.startswith("total: 63s") for l in lines), run.stdout
    # without an oracle selection the report says that its row is missing
    os.remove(out / "select" / "critical@0.3.jsonl")
    os.remove(out / "select" / "critical@0.3.jsonl.errors.jsonl")
    third = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "demo_report.py"), "--out", str(out),
                            "--model", str(tmp_path / "nomodel")], capture_output=True, text=True, check=True)
    assert "did not run" in next(l for l in third.stdout.splitlines() if l.startswith("critical@M"))


def test_run_all_reads_every_bench():
    import run_all
    for path in sorted(os.listdir(os.path.join(ROOT, "bench"))):
        if path.startswith("bench_") and path.endswith(".py"):
            name = path[len("bench_"):-3]
            src = open(os.path.join(ROOT, "bench", path)).read()
            assert name in run_all.PARSE or '"ratios"' in src, f"bench/{path}: run_all.py cannot read its numbers"


def test_run_all_patterns():
    import run_all
    samples = {  # lines in the form each bench prints them (see the print calls at the end of each bench)
        "select": ("        loop:  70.1/s -> ratio 0.876\nsteady state:  75.0/s -> ratio 0.937\n"
                   "select.py loop / bare client on this machine now: 0.950\n", [0.876, 0.937, 0.95]),
        "train": ("train.py: 900 tok/s | HF Trainer: 600 tok/s | ratio 1.51x (goal >= 1.0) | step-1 loss 2.51234 vs "
                  "2.51234 (diff 4.0e-07) | step-4 loss 2.1 vs 2.1\n", [1.51, 4.0e-07]),
        "perplexity": ("one pass per trajectory:            1.20 s  (   20.0 steps/s)  speed-up   8.3x\n"
                       "one pass, token-budget batches:     1.00 s  (   24.0 steps/s)  speed-up  10.0x\n"
                       "largest relative difference of the step PPLs vs naive: 3.1e-07\n", [8.3, 10.0, 3.1e-07]),
        "evaluate": ("throughput gain of --concurrency 8 over 1: 5.14x (ideal 8x; 48 episodes)\n", [5.14]),
        "value": ("speed-up of concurrency 8 over 1: 6.9x\n", [6.9]),
    }
    assert set(samples) == set(run_all.PARSE)
    for name, (text, want) in samples.items():
        got = [v for _, v, _ in run_all.parse(name, text)]
        assert got == want, (name, got, want)
    # a JSON last line wins over the patterns
    assert run_all.parse("select", "loop: 1/s -> ratio 0.5\n" + json.dumps({"ratios": {"a": 2.0}})) == \
        [("a", 2.0, "")]


KV_OK = ("KV reuse  : 2 episodes, 4 rounds in 0.2s -> 10.9691 episodes/s, 21.938 rounds/s; tokens prefilled 4248, "
         "reused 4055, fallbacks 0; ends ['max_rounds']\n"  # the last lines of bench_kv.py --model tiny
         "greedy conversations identical in all 2 episodes; KV reuse / re-prefill episodes/s: 2.99x (goal >= 3x)\n"
         '{"ratios": {"hf eval episodes/s KV reuse / re-prefill (tiny maze)": 2.992}, "goals": '
         '{"hf eval episodes/s KV reuse / re-prefill (tiny maze)": ">= 3"}}\n')


def test_run_all_reads_bf16_and_kv_reuse_numbers(tmp_path):
    """One run_all.py run gives train.py bf16 / fp32 tok/s (bench_train's JSON line) and bench_kv's KV reuse /
    re-prefill ratio with the number of episodes whose greedy outputs were identical; a bench_kv that found
    different outputs is a FAILED row that says so."""
    import argparse
    import run_all
    assert '"train.py tok/s bf16 / fp32 on this CPU"' in open(os.path.join(ROOT, "bench", "bench_train.py")).read()
    train = json.dumps({"ratios": {"train.py tok/s / HF Trainer tok/s": 1.2, "train.py tok/s bf16 / fp32 on this CPU":
                                   0.61}, "goals": {"train.py tok/s bf16 / fp32 on this CPU": ">= 1.8 if native bf16"}})
    assert ("train.py tok/s bf16 / fp32 on this CPU", 0.61, ">= 1.8 if native bf16") in run_all.parse("train", train)
    identical = "hf eval: episodes with identical greedy outputs, KV reuse vs re-prefill"
    assert run_all.parse("kv", KV_OK) == [("hf eval episodes/s KV reuse / re-prefill (tiny maze)", 2.992, ">= 3"),
                                          (identical, 2.0, "all")]
    # through run_bench, as run_all.py runs a bench: a fake bench_kv.py that prints those lines, then one that fails
    fake = tmp_path / "bench_kv.py"
    args = argparse.Namespace(logs=str(tmp_path), timeout=60)
    fake.write_text(f"print({KV_OK!r})\n")
    rows = run_all.run_bench(str(fake), args, has_cuda=False)
    assert [(r[0], r[1], r[2]) for r in rows] == [("kv", "hf eval episodes/s KV reuse / re-prefill (tiny maze)",
                                                   2.992), ("kv", identical, 2.0)], rows
    fake.write_text("import sys\nprint('NOT IDENTICAL: 1 of 2 episodes differ; first maze_0: (\"a\", \"b\")')\n"
                    "print('  round 30: 1 episodes, answers [64] tokens, 1.0s', file=sys.stderr)\nsys.exit(1)\n")
    rows = run_all.run_bench(str(fake), args, has_cuda=False)
    assert len(rows) == 1 and rows[0][1].startswith("FAILED (exit 1): NOT IDENTICAL: 1 of 2 episodes differ"), rows
    assert "NOT IDENTICAL" in (tmp_path / "kv.log").read_text()
