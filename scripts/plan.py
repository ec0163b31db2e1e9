"""
The plan of scripts/paper.sh: every stage the driver would run with its knobs, and its size, before anything is
spent. `PLAN=1 bash scripts/paper.sh` runs this with the driver's knobs as flags (demo.sh prints it first too):

    PLAN=1 MODEL=/models/Llama-3.1-8B-Instruct TRAIN_DATA=AgentTraj-L.json bash scripts/paper.sh
    PLAN=1 PLAN_GPU=H100 PLAN_MFU=0.35 MODEL=... bash scripts/paper.sh        # another GPU, another MFU

It prints, per stage: the oracle passes (requests, prompt tokens and dollars: select.py --dry-run's own estimate,
on the very training set the run would use), the trainings (records, optimizer steps, tokens, model FLOPs as
train.py counts them (flops.train_flops), GPU-hours at the stated peak and MFU), value estimation's rollouts,
perplexity's forward pass, the evaluation episodes per env, Table 6's restarts; and it checks every input: the
model folders, the training data, each env (built in, or an ENV_SERVERS entry whose server answers), the test
tasks, the oracles. What is missing is named under "missing" and the exit code is 1 (0 when nothing is).
It spends nothing and writes nothing (no $OUT, no cache); the plan is its standard output. What is already done
under $OUT (selections, trained models, results) is counted as done, as the driver would skip it.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import urllib.error
import urllib.request

sys.dont_write_bytecode = True  # the plan writes nothing, not even __pycache__
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import flops  # noqa: E402
import trajectory  # noqa: E402
from envs import REGISTRY, builtin_names, env_class, served_rounds  # noqa: E402

p = argparse.ArgumentParser(description="the plan of scripts/paper.sh (its knobs, as flags)")
# ---- what the driver runs (scripts/paper.sh's knobs of the same names)
p.add_argument("--out", required=True, help="OUT")
p.add_argument("--model", default="", help="MODEL: the main base model folder")
p.add_argument("--backbones", nargs="*", default=[], help="BACKBONES")
p.add_argument("--backbone-rows", nargs="*", default=[], help="BACKBONE_ROWS")
p.add_argument("--train-data", nargs="*", default=[], help="TRAIN_DATA")
p.add_argument("--train-envs", nargs="*", default=[], help="TRAIN_ENVS")
p.add_argument("--heldout-envs", nargs="*", default=[], help="HELDOUT_ENVS")
p.add_argument("--env-servers", nargs="*", default=[], help="ENV_SERVERS (ENV=URL ...)")
p.add_argument("--n-train", type=int, default=0, help="N_TRAIN")
p.add_argument("--n-eval", type=int, default=0, help="N_EVAL")
p.add_argument("--babyai-levels", nargs="*", type=int, default=[], help="BABYAI_LEVELS")
p.add_argument("--ratio", type=float, default=0.3, help="RATIO")
p.add_argument("--ratios", nargs="*", default=[], help="RATIOS")
p.add_argument("--random-ratios", nargs="*", default=[], help="RANDOM_RATIOS")
p.add_argument("--selectors", nargs="*", default=[], help="SELECTORS")
p.add_argument("--oracle-url", default="", help="ORACLE_URL")
p.add_argument("--oracle-model", default="gpt-4o", help="ORACLE_MODEL")
p.add_argument("--oracle-format", default="text", help="ORACLE_FORMAT")
p.add_argument("--oracle-ready", default="", help="ORACLE_READY")
p.add_argument("--oracle2-url", default="", help="ORACLE2_URL")
p.add_argument("--oracle2-model", default="", help="ORACLE2_MODEL")
p.add_argument("--oracle2-format", default="text", help="ORACLE2_FORMAT")
p.add_argument("--table4-envs", nargs="*", default=[], help="TABLE4_ENVS")
p.add_argument("--table5-envs", nargs="*", default=[], help="TABLE5_ENVS")
p.add_argument("--table6-envs", nargs="*", default=[], help="TABLE6_ENVS")
p.add_argument("--table6-n", type=int, default=100, help="TABLE6_N")
p.add_argument("--nproc", type=int, default=8, help="NPROC")
p.add_argument("--batch", type=int, default=128, help="BATCH")
p.add_argument("--epochs", type=int, default=3, help="EPOCHS")
p.add_argument("--max-length", type=int, default=8192, help="MAX_LENGTH")
p.add_argument("--eval-base", default="1", help="EVAL_BASE")
# ---- the plan's own assumptions
p.add_argument("--gpu", default="A100", help="PLAN_GPU: a GPU of flops.PEAK_BF16_TFLOPS, or its peak in TFLOP/s")
p.add_argument("--mfu", type=float, default=0.4, help="PLAN_MFU: the model FLOPs utilisation assumed")
p.add_argument("--rollouts", type=int, default=5, help="value estimation's N (value_estimate.py --rollouts)")
args = p.parse_args()
OUT, RATIO = args.out, f"{args.ratio:g}"
has = set(args.selectors).__contains__
missing = []


def need(ok, what):
    """Count `what` as missing unless ok; returns ok."""
    if not ok:
        missing.append(what)
    return ok


def answers(url):
    """None when an HTTP server answers at url (any status), else why not."""
    try:
        urllib.request.urlopen(url, timeout=5).close()
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, ValueError) as e:
        return str(getattr(e, "reason", e))
    return None


def done(path):
    return os.path.isfile(os.path.join(OUT, path))


def lines(path):
    path = os.path.join(OUT, path)
    return sum(1 for line in open(path) if line.strip()) if os.path.isfile(path) else 0


print(f"plan of scripts/paper.sh for OUT={OUT} (PLAN=1: nothing below has run, nothing was written)")

# ----------------------------------------------------------------------------- inputs
print("\ninputs")
servers = dict(kv.split("=", 1) for kv in args.env_servers if "=" in kv)
need(all("=" in kv for kv in args.env_servers), f"ENV_SERVERS: {args.env_servers} is not ENV=URL ...")
backbones = [args.model] + [b for b in args.backbones if os.path.abspath(b) != os.path.abspath(args.model or ".")]
shapes, tokenizers = {}, {}
for b in backbones:
    if not need(bool(b), "MODEL: not set (the base model folder)"):
        continue
    if not need(os.path.isfile(os.path.join(b, "config.json")), f"model folder {b}: no config.json"):
        print(f"  model {b}: MISSING (no config.json)")
        continue
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    config = AutoConfig.from_pretrained(b)
    with torch.device("meta"):  # the shape only: no weights are read
        shapes[b] = flops.model_shape(AutoModelForCausalLM.from_config(config), config)
    tokenizers[b] = AutoTokenizer.from_pretrained(b)
    n = shapes[b]["n_body"]
    print(f"  model {os.path.basename(os.path.normpath(b))}: {b} ({n / 1e9:.3g}B parameters in the decoder, "
          f"{shapes[b]['n_layer']} layers, vocabulary {shapes[b]['vocab']})")
all_envs = args.train_envs + [e for e in args.heldout_envs if e not in args.train_envs]
for env in dict.fromkeys(all_envs + args.table4_envs + args.table5_envs + args.table6_envs):
    role = "trained on and evaluated" if env in args.train_envs else \
        "evaluated (held out)" if env in args.heldout_envs else "not in TRAIN_ENVS: its Table 4/5/6 cells are skipped"
    if env not in REGISTRY:
        need(env not in all_envs, f"env {env}: no such environment here (envs/__init__.py: {', '.join(REGISTRY)})")
        print(f"  env {env}: UNKNOWN ({role})")
    elif env in builtin_names():  # made once, as evaluate.py makes it (its simulator, its data: pddl's AgentBoard)
        try:
            env_class(env)().close()
            why = None
        except Exception as e:  # any reason it cannot be made is the one line the evaluation would stop with
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
        need(why is None or env not in all_envs, f"env {env}: cannot be made here: {why}")
        print(f"  env {env}: built in{'' if why is None else ', CANNOT BE MADE: ' + why} ({role})")
    elif env in servers:
        why = answers(servers[env])
        need(why is None or env not in all_envs, f"env {env}: its server {servers[env]} does not answer ({why})")
        print(f"  env {env}: server {servers[env]} {'answers' if why is None else 'DOES NOT ANSWER: ' + why} ({role})")
    else:
        served = env in served_rounds()
        need(env not in all_envs, f"env {env}: not built in and " +
             ("no ENV_SERVERS entry" if served else "no client here (facts only)"))
        print(f"  env {env}: {'no server in ENV_SERVERS' if served else 'no client here'} ({role})")

# the test tasks of every env, as scripts/paper_data.py picks them (TASKS_<env>=A:B, else the first N_EVAL test ids)
tasks = {}
for env in all_envs:
    written, ids_file, spec = os.path.join(OUT, "data", f"{env}_tasks.txt"), \
        os.path.join(ROOT, "data", f"{env}_test_ids.txt"), os.environ.get(f"TASKS_{env}")
    if os.path.isfile(written):
        tasks[env] = [int(x) for x in open(written).read().split()]
    elif spec:
        a, _, b = spec.partition(":")
        ok = need(a.isdigit() and b.isdigit(), f"TASKS_{env}={spec}: not A:B")
        tasks[env] = list(range(int(a), int(b))) if ok else []
    elif need(os.path.isfile(ids_file), f"test tasks of {env}: no data/{env}_test_ids.txt (set TASKS_{env}=A:B)"):
        ids = [int(x) for x in open(ids_file).read().split()]
        ids = [t for t in ids if env != "babyai" or not args.babyai_levels or t % 40 in args.babyai_levels]
        tasks[env] = ids[:args.n_eval] if args.n_eval > 0 else ids
    else:
        tasks[env] = []
print("  test tasks: " + ", ".join(f"{e} {len(t)}" for e, t in tasks.items()))

for name, url, model, ready in [("ORACLE", args.oracle_url, args.oracle_model, args.oracle_ready),
                                ("ORACLE2", args.oracle2_url, args.oracle2_model, "")]:
    if not has("oracle") or (name == "ORACLE2" and not url):
        continue
    if ready:
        print(f"  {name}: {url} ({model}), waited for by ORACLE_READY before its first request")
    elif url:
        why = answers(url.rstrip("/") + "/models")
        need(why is None, f"{name}_URL {url} does not answer ({why})")
        print(f"  {name}: {url} ({model}) {'answers' if why is None else 'DOES NOT ANSWER: ' + why}")
    else:
        need(bool(os.environ.get("OPENAI_API_KEY")), "OPENAI_API_KEY: not set (the oracle is OpenAI's " + model + ")")
        print(f"  {name}: OpenAI ({model}), OPENAI_API_KEY {'set' if os.environ.get('OPENAI_API_KEY') else 'NOT SET'}")

# ----------------------------------------------------------------------------- the training set
print("\ndata")
written = os.path.join(OUT, "data", "train.jsonl")
records = []
if os.path.isfile(written):
    records, source = trajectory.read_records(written), f"{written} (exists: the run uses it)"
else:  # scripts/paper_data.py's rule: the files' records of TRAIN_ENVS (and BABYAI_LEVELS), N_TRAIN per env
    files = args.train_data or [os.path.join(ROOT, "data", f"{e}_train.jsonl") for e in args.train_envs]
    per_env = {e: [] for e in args.train_envs}
    for f in files:
        if not need(os.path.isfile(f), f"training data {f}: no such file"):
            continue
        for r in trajectory.read_records(f):
            try:
                env, task = trajectory.env_task(r)
            except ValueError:
                continue
            if env in per_env and (env != "babyai" or not args.babyai_levels or task % 40 in args.babyai_levels):
                per_env[env].append(r)
    records = [r for e in args.train_envs for r in (per_env[e][:args.n_train] if args.n_train > 0 else per_env[e])]
    source = f"{' '.join(files)} (would be written to {written})"
env_of = {r["item_id"]: trajectory.split_item_id(r["item_id"])[0] for r in records}
steps = {r["item_id"]: len(trajectory.step_indices(r)) for r in records}
need(bool(records), f"training set: no trajectory of {' '.join(args.train_envs)}")
print(f"  {len(records)} trajectories, {sum(steps.values())} steps from {source}")
print("  per env: " + ", ".join(f"{e} {sum(v == e for v in env_of.values())}" for e in args.train_envs))

# ----------------------------------------------------------------------------- the models the driver trains
# (folder under OUT, the selection it trains on, its base model, the envs it is evaluated on), in the driver's order
main_labels = ["complete"] + [f"random@{m}" for m in args.random_ratios if has("random")] + \
    [f"perplexity@{RATIO}"] * has("perplexity") + [f"critical@{m}" for m in args.ratios if has("oracle")] + \
    [f"noncritical@{RATIO}"] * (has("oracle") and has("complement"))
models = [(f"train/{lab}", f"select/{lab}.jsonl", args.model, all_envs, None) for lab in main_labels]
single_envs = list(dict.fromkeys(args.table4_envs + args.table5_envs))
for env in single_envs if has("oracle") else []:
    n_env = sum(v == env for v in env_of.values())
    if env not in args.train_envs or n_env == 0:
        print(f"  single-task {env}: no records in the training set: its Table 4/5 cells are skipped")
        continue
    rows = [f"critical@{RATIO}"] + ["value"] * (env in args.table4_envs and has("value")) + \
        [f"oracle2-critical@{RATIO}"] * (env in args.table5_envs and bool(args.oracle2_url))
    models += [(f"single/{env}/train/{lab}", f"single/{env}/select/{lab}.jsonl", args.model, [env], env) for lab in rows]
for b in backbones[1:]:
    name = os.path.basename(os.path.normpath(b))
    for lab in args.backbone_rows:
        if lab in main_labels:
            models.append((f"backbones/{name}/train/{lab}", f"select/{lab}.jsonl", b, all_envs, None))
        else:
            print(f"  backbone {name}: {lab} is no selection of this run (SELECTORS, RATIOS, RANDOM_RATIOS): skipped")

# ----------------------------------------------------------------------------- select
print("\nselect")


def oracle_dry_run(recs, output, ratio, model, fmt):
    """select.py --dry-run's own lines for `recs`, read from memory (a memfd: nothing is written to disk)."""
    fd = os.memfd_create("plan-input")
    with os.fdopen(os.dup(fd), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
    run = subprocess.run([sys.executable, os.path.join(ROOT, "select.py"), "--input", f"/proc/self/fd/{fd}",
                          "--output", output, "--ratio", ratio, "--model", model, "--response-format", fmt, "--dry-run"], pass_fds=(fd,), cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    os.close(fd)
    if run.returncode != 0:
        need(False, f"select.py --dry-run for {output}: {(run.stderr or run.stdout).strip().splitlines()[-1:]}")
    return (run.stdout + run.stderr).strip().splitlines()


dollars = []
if has("oracle") and records:
    for m in args.ratios:
        if done(f"train/critical@{m}/final/config.json"):
            print(f"  critical@{m}: used by its trained model: no request")
            continue
        print(f"  critical@{m} ({args.oracle_model}):")
        for line in oracle_dry_run(records, os.path.join(OUT, "select", f"critical@{m}.jsonl"), m,
                                   args.oracle_model, args.oracle_format):
            print("    " + line)
            if line.startswith("estimated cost: $"):
                dollars.append(float(line.split("$")[1].split()[0].replace(",", "")))
    for env in [e for e in args.table5_envs if args.oracle2_url and e in args.train_envs]:
        recs = [r for r in records if env_of[r["item_id"]] == env]
        if recs:
            print(f"  oracle2-critical@{RATIO} on {env} ({args.oracle2_model}):")
            for line in oracle_dry_run(recs, os.path.join(OUT, "single", env, "select",
                                                          f"oracle2-critical@{RATIO}.jsonl"),
                                       RATIO, args.oracle2_model, args.oracle2_format):
                print("    " + line)
for m in args.random_ratios if has("random") else []:
    print(f"  random@{m}: no request, seconds on a CPU")
if has("oracle") and has("complement"):
    print(f"  noncritical@{RATIO}: no request (the complement of critical@{RATIO})")


def tokens(base, recs):
    """[(tokens, loss tokens)] of recs as train.py sees them at --max-length (every step a loss step: an upper
    bound for a selection, whose tokens after its last selected step train.py drops)."""
    tok = tokenizers[base]
    out = []
    for r in recs:
        t = trajectory.tokenize_record(r, tok, args.max_length)
        out.append((len(t["input_ids"]), t["n_loss_tokens"]))
    return out


if args.gpu.replace(".", "", 1).isdigit():
    gpu, peak = f"a GPU of {args.gpu} TFLOP/s", float(args.gpu)
else:
    peak = next((v for n, v in flops.PEAK_BF16_TFLOPS if n in args.gpu), None)
    gpu = f"{args.gpu} (bf16 dense peak {peak:g} TFLOP/s)" if peak else None
    need(peak is not None, f"PLAN_GPU={args.gpu}: none of {', '.join(n for n, _ in flops.PEAK_BF16_TFLOPS)}; "
         "give its peak TFLOP/s instead")
seq = {b: dict(zip((r["item_id"] for r in records), tokens(b, records))) for b in shapes}


def cost(base, ids):
    """(tokens, model FLOPs of a forward + backward pass) of one epoch of base over the records `ids`."""
    sh = shapes[base]
    toks = [seq[base][i] for i in ids]
    return sum(t for t, _ in toks), sum(flops.train_flops(t, n, sh["n_body"], sh["n_layer"], sh["attn_dim"],
                                                          sh["d_model"], sh["vocab"]) for t, n in toks)


def gpu_hours(f):
    return f / (peak * 1e12 * args.mfu) / 3600 if peak else float("nan")


if has("perplexity") and args.model in shapes:
    if done(f"select/perplexity@{RATIO}.jsonl"):
        print(f"  perplexity@{RATIO}: exists")
    else:
        t, f = cost(args.model, list(seq[args.model]))
        f /= 3  # a forward pass alone: about a third of forward + backward
        print(f"  perplexity@{RATIO}: one forward pass of MODEL over {t:,} tokens, {f:.3g} FLOPs, "
              f"{gpu_hours(f):.3g} GPU-hours")
for env in [e for e in args.table4_envs if has("value") and e in args.train_envs]:
    recs = [r for r in records if env_of[r["item_id"]] == env]
    episodes = sum(args.rollouts * (steps[r["item_id"]] + 1) for r in recs)
    rounds = env_class(env).max_rounds if env in REGISTRY else 20
    print(f"  value_{env}: {len(recs)} trajectories, N (T + 1) = {episodes:,} rollout episodes of MODEL (hf "
          f"policy), at most {episodes * rounds:,} policy turns" + (" (exists)" if done(f"select/value_{env}.jsonl") else ""))

# ----------------------------------------------------------------------------- train
print(f"\ntrain: torchrun x {args.nproc}, {args.epochs} epochs, batch {args.batch}; GPU-hours at MFU "
      f"{args.mfu:g} on {gpu or '?'} (model FLOPs as train.py counts them; a selection's tokens are an upper "
      f"bound: train.py drops what follows its last selected step)")
total_h, n_train = 0.0, 0
for folder, sel, base, _, env in models:
    ids = [i for i in seq.get(base, {}) if env is None or env_of[i] == env]
    if done(f"{folder}/final/config.json"):
        print(f"  {folder}: done")
        continue
    n_train += 1
    if base not in shapes:
        print(f"  {folder}: {len(ids)} records (no model folder: no numbers)")
        continue
    t, f = cost(base, ids)
    t, f, h = t * args.epochs, f * args.epochs, gpu_hours(f * args.epochs)
    total_h += h
    print(f"  {folder}: {len(ids)} records, {math.ceil(len(ids) / args.batch) * args.epochs} steps, {t:,.0f} tokens, "
          f"{f:.3g} FLOPs, {h:.3g} GPU-hours = {h / args.nproc:.3g} h on {args.nproc} GPUs")
print(f"  {n_train} trainings to run, {total_h:.3g} GPU-hours")

# ----------------------------------------------------------------------------- eval
print("\neval (greedy; at most each env's round limit of policy turns an episode)")
evals = [(f"{os.path.dirname(os.path.dirname(folder))}/results/{os.path.basename(folder)}".lstrip("/"), envs_)
         for folder, _, _, envs_, _ in models]
if args.eval_base == "1":
    evals += [("results/base", all_envs)] + [(f"backbones/{os.path.basename(os.path.normpath(b))}/results/base",
                                              all_envs) for b in backbones[1:]]
total = 0
for env in all_envs:
    runs_ = [stem for stem, envs_ in evals if env in envs_]
    todo = sum(max(0, len(tasks[env]) - lines(f"{stem}_{env}.jsonl")) for stem in runs_)
    total += todo
    rounds = env_class(env).max_rounds if env in REGISTRY else 20
    print(f"  {env}: {len(tasks[env])} tasks x {len(runs_)} models = {todo:,} episodes to run, at most "
          f"{todo * rounds:,} policy turns")
for env in args.table6_envs if has("oracle") else []:
    recs = [r for r in records if env_of[r["item_id"]] == env][:args.table6_n]
    eps = sum(trajectory.budget(steps[r["item_id"]], args.ratio) + 1 for r in recs)
    print(f"  table6 {env}: {len(recs)} trajectories, at most {eps:,} episodes (one per critical step + scratch)")
    total += eps

# ----------------------------------------------------------------------------- in all
print(f"\nin all: {len(dollars)} oracle passes (${sum(dollars):,.2f} at list prices), {n_train} trainings "
      f"({total_h:.3g} GPU-hours at MFU {args.mfu:g}), {total:,} evaluation episodes")
if missing:
    print(f"\nmissing ({len(missing)}):")
    print("\n".join(f"  {m}" for m in missing))
    sys.exit(1)
print("missing: nothing")
