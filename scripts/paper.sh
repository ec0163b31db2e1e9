#!/usr/bin/env bash
# The paper end to end from one command: selections, training, evaluation, Tables 1, 2, 3 and 6, token shares.
# Defaults are the paper's; demo.sh runs this same script at laptop size.
#
#   MODEL=/models/Llama-3.1-8B-Instruct NPROC=8 bash scripts/paper.sh          # the paper (see below)
#   bash demo.sh                                                                 # the same at laptop size
#
# Stages (each one resumable: a rerun skips what is done and resumes what was cut; logs under $OUT/logs):
#   data        the training set (TRAIN_DATA, or the bundled data/<env>_train.jsonl of TRAIN_ENVS) and the test tasks
#   select      for every m in RATIOS: the oracle's critical steps (critical@m, select.py) and random@m;
#               at m = RATIO: the complement of the critical steps (noncritical@m), perplexity@m, value (App. B.3)
#   train       torchrun train.py on each selection and on the complete trajectories (complete)
#   eval        evaluate.py on every checkpoint and on the base model, held-in and held-out envs (Table 1)
#   table6      evaluate.py --from-critical: the base model restarted after each critical step (Table 6)
#   report      evaluate.py --report (Tables 1, 2, 3, 6 with episodes per cell and 95 % intervals, table1.png) and
#               analyze.py (per env: share of steps and of loss tokens of every selection, next to m)
#
# Knobs are environment variables (defaults = the paper where it says; the demo overrides the sizes):
OUT=${OUT:-out/paper}                 # everything this run writes
MODEL=${MODEL:-}                      # the base model folder (paper: Llama-3.1-8B-Instruct, Mistral-7B, Qwen2.5-7B)
TRAIN_DATA=${TRAIN_DATA:-}            # AgentTraj-L file(s), space-separated (JSON list or JSONL); empty: the bundled
                                      # expert data data/<env>_train.jsonl of TRAIN_ENVS
TRAIN_ENVS=${TRAIN_ENVS:-"babyai maze sciworld wordle textcraft"}  # held-in: trained on and evaluated
HELDOUT_ENVS=${HELDOUT_ENVS:-"pddl"}  # held-out: evaluated only
ENV_SERVERS=${ENV_SERVERS:-}          # AgentGym servers for envs that are not built in, e.g.
                                      # "webshop=http://127.0.0.1:36001 alfworld=http://127.0.0.1:36002"
N_TRAIN=${N_TRAIN:-0}                 # trajectories per env in the training set (0: all)
N_EVAL=${N_EVAL:-0}                   # test tasks per env (0: all of data/<env>_test_ids.txt, or TASKS_<env>=A:B)
BABYAI_LEVELS=${BABYAI_LEVELS:-}      # only these BabyAI levels (task id i plays level i % 40) in the training set
                                      # and the test tasks, e.g. "0 1 2 3 4" (empty: all 40, as in the paper)
RATIO=${RATIO:-0.3}                   # m (paper: 30 %)
RATIOS=${RATIOS:-"0.1 0.2 0.3"}       # Table 3's sweep (random vs critical)
SELECTORS=${SELECTORS:-"oracle random complement perplexity value"}
ORACLE_URL=${ORACLE_URL:-}            # OpenAI-compatible server (empty: OpenAI itself, key in OPENAI_API_KEY; the
                                      # demo's: a gguf it serves with llama.cpp, scripts/llama_oracle.py)
ORACLE_MODEL=${ORACLE_MODEL:-gpt-4o}
ORACLE_FORMAT=${ORACLE_FORMAT:-text}  # select.py --response-format
ORACLE_ARGS=${ORACLE_ARGS:-}          # more select.py flags, e.g. "--concurrency 16"
ORACLE_READY=${ORACLE_READY:-}        # a command run before the oracle's first request, that returns once the oracle
                                      # answers; when it fails (its stdout says why) the oracle rows are left out
ORACLE_BUDGET_S=${ORACLE_BUDGET_S:-0} # wall-clock cap of one oracle selection (0: none); what is done is kept
VALUE_ENVS=${VALUE_ENVS:-"babyai maze wordle"}  # value estimation needs deterministic resets (built-in envs here)
VALUE_ARGS=${VALUE_ARGS:-}            # more value_estimate.py flags
NPROC=${NPROC:-8}                     # torchrun processes (GPUs)
BATCH=${BATCH:-128}                   # global batch in trajectories
EPOCHS=${EPOCHS:-3}
LR=${LR:-2e-5}
MAX_LENGTH=${MAX_LENGTH:-8192}
TRAIN_ARGS=${TRAIN_ARGS:-}            # more train.py flags (e.g. --activation-checkpointing, --max-steps N)
EVAL_BASE=${EVAL_BASE:-1}             # 1: evaluate the untrained base model too (the reference row)
MAX_CONTEXT=${MAX_CONTEXT:-4096}      # AgentGym: prompt + answer <= 4096 tokens
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-512}
EVAL_CONCURRENCY=${EVAL_CONCURRENCY:-16}  # episodes generated in one batch
EVAL_PARALLEL=${EVAL_PARALLEL:-0}     # 1: one evaluate.py per env at once, one thread each (CPU)
TABLE6_ENVS=${TABLE6_ENVS:-"babyai maze"}  # the paper: 100 BabyAI and Maze tasks
TABLE6_N=${TABLE6_N:-100}             # trajectories per env restarted after each of their critical steps
PY=${PY:-python}
set -euo pipefail
cd "$(dirname "$0")/.."

for s in $SELECTORS; do  # a misspelt selector would silently leave its rows out
    case $s in oracle|random|complement|perplexity|value) ;; *)
        echo "scripts/paper.sh: SELECTORS: $s is none of oracle random complement perplexity value" >&2; exit 2;; esac
done
[ -n "$MODEL" ] || { echo "scripts/paper.sh: set MODEL to the base model folder" >&2; exit 2; }
[ -f "$MODEL/config.json" ] || {
    echo "scripts/paper.sh: MODEL=$MODEL is not a model folder (no config.json)" >&2; exit 2; }
mkdir -p "$OUT"/{logs,data,select,train,results,table6}
OUT=$(cd "$OUT" && pwd)
TIMINGS="$OUT/timings.tsv"
T_START=$(date +%s)
say() { echo -e "\n[paper $(date -u +%H:%M:%S)] $*"; }
loud() { echo -e "\n[paper] !!!!!!!! $* !!!!!!!!" | tee -a "$OUT/warnings.txt"; }
stage() {  # stage NAME CMD...: run CMD, log its time (a stage whose outputs exist returns at once)
    local name=$1; shift
    local t0=$(date +%s)
    say "stage $name"
    "$@"
    local dt=$(( $(date +%s) - t0 ))
    printf '%s\t%s\n' "$name" "$dt" >> "$TIMINGS"
    echo "[paper] stage $name: ${dt}s"
}
: > "$OUT/warnings.txt"
printf 'run\t%s\n' "$(date -u +%FT%TZ)" >> "$TIMINGS"
has() { case " $SELECTORS " in *" $1 "*) return 0;; esac; return 1; }
server_of() {  # server_of ENV: its AgentGym server URL from ENV_SERVERS, or nothing (built-in)
    local kv; for kv in $ENV_SERVERS; do [ "${kv%%=*}" = "$1" ] && { echo "${kv#*=}"; return; }; done; true
}
ALL_ENVS="$TRAIN_ENVS $HELDOUT_ENVS"

# ---- data: the training set and the test tasks of every env
make_data() {
    $PY scripts/paper_data.py --out "$OUT/data" --train-envs $TRAIN_ENVS --heldout-envs $HELDOUT_ENVS \
        --train-data $TRAIN_DATA --n-train "$N_TRAIN" --n-eval "$N_EVAL" --babyai-levels $BABYAI_LEVELS
}
stage data make_data
DATA="$OUT/data/train.jsonl"

# ---- select
select_offline() {
    cp -n "$DATA" "$OUT/select/complete.jsonl" 2>/dev/null || true   # every step: AgentGym's SFT baseline
    local m
    if has random; then
        for m in $RATIOS; do
            $PY select.py --input "$DATA" --output "$OUT/select/random@$m.jsonl" --method random --ratio "$m" \
                | tail -n 2
        done
    fi
    if has perplexity; then
        $PY perplexity.py --input "$DATA" --output "$OUT/select/perplexity@$RATIO.jsonl" --model "$MODEL" \
            --ratio "$RATIO" --max-length "$MAX_LENGTH" 2>&1 | grep -v "it/s\]" | tail -n 3
    fi
}
select_value() {
    local env parts=()
    [ -f "$OUT/select/value.jsonl" ] && { echo "$OUT/select/value.jsonl: exists"; return; }
    for env in $VALUE_ENVS; do
        case " $TRAIN_ENVS " in *" $env "*) ;; *) continue;; esac
        local srv; srv=$(server_of "$env")
        $PY value_estimate.py --input "$DATA" --env "$env" ${srv:+--env-server "$srv"} --policy hf --model "$MODEL" \
            --max-context "$MAX_CONTEXT" --output "$OUT/select/value_$env.jsonl" $VALUE_ARGS \
            2>&1 | grep -v "it/s\]" | tail -n 3
        parts+=("$OUT/select/value_$env.jsonl")
    done
    [ ${#parts[@]} -gt 0 ] && cat "${parts[@]}" > "$OUT/select/value.jsonl.tmp" \
        && mv "$OUT/select/value.jsonl.tmp" "$OUT/select/value.jsonl"
    true
}

# The oracle: an OpenAI-compatible server (ORACLE_URL) or OpenAI itself.
select_oracle() {
    local m todo=()
    for m in $RATIOS; do [ -f "$OUT/train/critical@$m/final/config.json" ] || todo+=("$m"); done
    [ ${#todo[@]} -eq 0 ] && { echo "critical selections: used by their trained models"; return; }
    if [ -n "$ORACLE_READY" ]; then  # e.g. the demo's llama.cpp server, which may still be building
        local why
        why=$($ORACLE_READY) || { loud "${why:-ORACLE_READY ($ORACLE_READY) failed}: no oracle rows"; return 0; }
    fi
    for m in "${todo[@]}"; do
        local cap=(); [ "$ORACLE_BUDGET_S" -gt 0 ] && cap=(timeout --signal INT "$ORACLE_BUDGET_S")
        OPENAI_API_KEY=${OPENAI_API_KEY:-sk-local} "${cap[@]}" $PY select.py --input "$DATA" \
            --output "$OUT/select/critical@$m.jsonl" --ratio "$m" ${ORACLE_URL:+--base-url "$ORACLE_URL"} \
            --model "$ORACLE_MODEL" --response-format "$ORACLE_FORMAT" $ORACLE_ARGS \
            2>&1 | tee "$OUT/logs/select_critical@$m.log" | grep -v "it/s\]" | tail -n 12 || true
    done
    if has complement && [ -s "$OUT/select/critical@$RATIO.jsonl" ]; then
        $PY select.py --input "$DATA" --output "$OUT/select/noncritical@$RATIO.jsonl" --method complement \
            --reference "$OUT/select/critical@$RATIO.jsonl" | tail -n 2
    fi
}

# ---- train (one function for every selection)
train_one() {  # train_one LABEL SELECTION.jsonl
    local label=$1 data=$2 dir="$OUT/train/$1"
    [ -s "$data" ] || { loud "$data is missing or empty: no $label row"; return 0; }
    if [ -f "$dir/final/config.json" ]; then echo "$dir/final: exists"; return; fi
    local resume=""   # a run cut by a kill goes on from its last save; one cut before any save starts over
    if [ -e "$dir/state/latest" ]; then resume="--resume"; elif [ -f "$dir/config.json" ]; then resume="--overwrite"; fi
    torchrun --nproc_per_node "$NPROC" train.py --data "$data" --model "$MODEL" --output "$dir" \
        --epochs "$EPOCHS" --batch-size "$BATCH" --lr "$LR" --max-length "$MAX_LENGTH" --seed 0 $resume $TRAIN_ARGS \
        > "$OUT/logs/train_$label.log" 2>&1 || { tail -n 30 "$OUT/logs/train_$label.log"; return 1; }
    grep -E "^(global batch|step |compute|[0-9]+ trajector)" "$OUT/logs/train_$label.log" | tail -n 4 || true
}

# ---- eval (one function for every checkpoint): each env of TRAIN_ENVS and HELDOUT_ENVS
eval_env() {  # eval_env LABEL MODEL_DIR ENV
    local label=$1 model=$2 env=$3 srv; srv=$(server_of "$3")
    local threads=(); [ "$EVAL_PARALLEL" = 1 ] && threads=(env OMP_NUM_THREADS=1)
    "${threads[@]}" $PY evaluate.py --env "$env" ${srv:+--env-server "$srv"} --policy hf --model "$model" \
        --task-file "$OUT/data/${env}_tasks.txt" --concurrency "$EVAL_CONCURRENCY" --max-new-tokens "$MAX_NEW_TOKENS" \
        --max-context "$MAX_CONTEXT" --label "$label" --output "$OUT/results/${label}_${env}.jsonl" \
        > "$OUT/logs/eval_${label}_${env}.log" 2>&1
}
eval_one() {  # eval_one LABEL MODEL_DIR
    local label=$1 model=$2 env pids=() rc=0
    [ -f "$model/config.json" ] || { loud "$model is missing: no $label row"; return 0; }
    for env in $ALL_ENVS; do
        if [ "$EVAL_PARALLEL" = 1 ]; then eval_env "$label" "$model" "$env" & pids+=($!)
        else eval_env "$label" "$model" "$env" || rc=1; fi
    done
    for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
    local lines=1; [ "$rc" = 0 ] || lines=20   # a failure shows the end of every env's log
    for env in $ALL_ENVS; do tail -n "$lines" "$OUT/logs/eval_${label}_${env}.log"; done
    return $rc
}
train_eval() {  # train_eval LABEL SELECTION.jsonl
    stage "train_$1" train_one "$1" "$2"
    stage "eval_$1" eval_one "$1" "$OUT/train/$1/final"
}

# ---- table 6: the base model restarted after each critical step of the oracle's selection
table6() {
    local sel="$OUT/select/critical@$RATIO.jsonl" env
    [ -s "$sel" ] || { loud "no $sel: Table 6 needs the oracle's critical steps"; return 0; }
    for env in $TABLE6_ENVS; do
        local part="$OUT/table6/${env}_selection.jsonl" srv; srv=$(server_of "$env")
        $PY scripts/take_env.py --input "$sel" --output "$part" --env "$env" -n "$TABLE6_N"
        [ -s "$part" ] || continue
        $PY evaluate.py --from-critical "$part" --env "$env" ${srv:+--env-server "$srv"} --policy hf --model "$MODEL" \
            --concurrency "$EVAL_CONCURRENCY" --max-new-tokens "$MAX_NEW_TOKENS" --max-context "$MAX_CONTEXT" \
            --label base --output "$OUT/table6/${env}.jsonl" > "$OUT/logs/table6_${env}.log" 2>&1 \
            || { tail -n 20 "$OUT/logs/table6_${env}.log"; return 1; }
        tail -n 1 "$OUT/logs/table6_${env}.log"
    done
}

# ---- the run: offline selectors first (an oracle still starting, as the demo's, gets that time), then the
# oracle's rows
stage select_offline select_offline
if has value; then stage select_value select_value; fi
train_eval complete "$OUT/select/complete.jsonl"
if has random; then for m in $RATIOS; do train_eval "random@$m" "$OUT/select/random@$m.jsonl"; done; fi
if has perplexity; then train_eval "perplexity@$RATIO" "$OUT/select/perplexity@$RATIO.jsonl"; fi
if has value; then train_eval value "$OUT/select/value.jsonl"; fi
if [ "$EVAL_BASE" = 1 ]; then stage eval_base eval_one base "$MODEL"; fi
if has oracle; then
    stage select_oracle select_oracle
    for m in $RATIOS; do train_eval "critical@$m" "$OUT/select/critical@$m.jsonl"; done
    if has complement; then train_eval "noncritical@$RATIO" "$OUT/select/noncritical@$RATIO.jsonl"; fi
    stage table6 table6
else
    loud "no oracle in SELECTORS: the critical rows, Table 2's non-critical row and Table 6 are missing"
fi

# ---- report
report() {
    local results=("$OUT"/results/*.jsonl) t6=() f
    for f in "$OUT"/table6/*.jsonl; do case $f in *_selection.jsonl|*'*'*) ;; *) t6+=("$f");; esac; done
    $PY evaluate.py --report "${results[@]}" "${t6[@]}" --report-png "$OUT/table1.png" \
        --held-out "$(echo $HELDOUT_ENVS | tr ' ' ',')" | tee "$OUT/report.txt"
    $PY analyze.py "$OUT"/select/*.jsonl --tokenizer "$MODEL" --json "$OUT/shares.json" | tee "$OUT/shares.txt"
}
stage report report
printf 'total\t%s\n' "$(( $(date +%s) - T_START ))" >> "$TIMINGS"
say "done in $(( $(date +%s) - T_START )) s: $OUT/report.txt, $OUT/shares.txt, $OUT/table1.png"
