#!/usr/bin/env bash
# The paper end to end from one command: selections, training, evaluation, Tables 1-7 and Figure 2, token shares.
# Defaults are the paper's; demo.sh runs this same script at laptop size.
#
#   PLAN=1 MODEL=/models/Llama-3.1-8B-Instruct bash scripts/paper.sh    # first: what it would run, its size and
#                                                                       # cost, every input checked; spends nothing
#   MODEL=/models/Llama-3.1-8B-Instruct NPROC=8 bash scripts/paper.sh   # the paper (docs/REPRODUCING.md)
#   bash demo.sh                                                        # the same at laptop size
#
# Stages (each one resumable: a rerun skips what is done and resumes what was cut; logs under $OUT/logs):
#   data        the training set (TRAIN_DATA, or the bundled data/<env>_train.jsonl of TRAIN_ENVS) and the test tasks
#   select      the oracle's critical steps at every m of RATIOS (critical@m, select.py), random@m at every m of
#               RANDOM_RATIOS; at m = RATIO the complement of the critical steps (noncritical@m) and perplexity@m;
#               value estimation (App. B.3) on each env of TABLE4_ENVS; the second oracle on TABLE5_ENVS
#   train       torchrun train.py on each selection and on the complete trajectories (complete)
#   eval        evaluate.py on every checkpoint and on the base model, held-in and held-out envs (Table 1)
#   table6      evaluate.py --from-critical: the base model restarted after each critical step (Table 6)
#   single      single-task models (Tables 4, 5): one env's records of a selection, evaluated on that env
#   backbones   the other base models of BACKBONES: BACKBONE_ROWS trained on the same selections (Table 7, Figure 2)
#   report      evaluate.py --report (Tables 1-7 with episodes per cell and 95 % intervals, the paper's numbers
#               beside ours, table1.png and Figure 2 beside it) and analyze.py (per env: share of steps and of
#               loss tokens of every selection, next to m)
#
# Knobs are environment variables (defaults = the paper where it says; the demo overrides the sizes). PDDL and Jericho
# (held out) read AgentBoard's files from ATLAS_AGENTBOARD_DATA (envs/agentboard.py); PLAN=1 checks every env.
OUT=${OUT:-out/paper}                 # everything this run writes
MODEL=${MODEL:-}                      # the main base model folder (paper: Llama-3.1-8B-Instruct): Tables 1-6
BACKBONES=${BACKBONES:-$MODEL}        # every base model folder, space-separated (paper: Llama-3.1-8B-Instruct,
                                      # Mistral-7B-Instruct-v0.3, Qwen2.5-7B-Instruct); those other than MODEL train
                                      # BACKBONE_ROWS under $OUT/backbones/<folder name>/ (Table 7, Figure 2)
TRAIN_DATA=${TRAIN_DATA:-}            # AgentTraj-L file(s), space-separated (JSON list or JSONL); empty: the bundled
                                      # expert data data/<env>_train.jsonl of TRAIN_ENVS
TRAIN_ENVS=${TRAIN_ENVS:-"babyai maze sciworld wordle textcraft"}  # held-in: trained on and evaluated
HELDOUT_ENVS=${HELDOUT_ENVS:-"pddl"}  # held-out: evaluated only (the paper's four: "academia sheet jericho pddl";
                                      # pddl and jericho need ATLAS_AGENTBOARD_DATA, academia and sheet a server;
                                      # offline without AgentBoard's data: "pddlgym", a stand-in, not the paper's)
ENV_SERVERS=${ENV_SERVERS:-}          # AgentGym servers for envs that are not built in, e.g.
                                      # "webshop=http://127.0.0.1:36001 alfworld=http://127.0.0.1:36002"
N_TRAIN=${N_TRAIN:-0}                 # trajectories per env in the training set (0: all)
N_EVAL=${N_EVAL:-0}                   # test tasks per env (0: all of data/<env>_test_ids.txt, or TASKS_<env>=A:B)
BABYAI_LEVELS=${BABYAI_LEVELS:-}      # only these BabyAI levels (task id i plays level i % 40) in the training set
                                      # and the test tasks, e.g. "0 1 2 3 4" (empty: all 40, as in the paper)
RATIO=${RATIO:-0.3}                   # m (paper: 30 %)
RATIOS=${RATIOS:-"0.1 0.2 0.3"}       # Table 3's critical sweep
RANDOM_RATIOS=${RANDOM_RATIOS:-"0.1 0.2 0.3 0.4"}  # random steps (Table 3; Table 7 adds 40 %)
SELECTORS=${SELECTORS:-"oracle random complement perplexity value"}
ORACLE_URL=${ORACLE_URL:-}            # OpenAI-compatible server (empty: OpenAI itself, key in OPENAI_API_KEY; the
                                      # demo's: a gguf it serves with llama.cpp, scripts/llama_oracle.py)
ORACLE_MODEL=${ORACLE_MODEL:-gpt-4o}
ORACLE_FORMAT=${ORACLE_FORMAT:-text}  # select.py --response-format
ORACLE_ARGS=${ORACLE_ARGS:-}          # more select.py flags, e.g. "--concurrency 16"
ORACLE_READY=${ORACLE_READY:-}        # a command run before the oracle's first request, that returns once the oracle
                                      # answers; when it fails (its stdout says why) the oracle rows are left out
ORACLE_BUDGET_S=${ORACLE_BUDGET_S:-0} # wall-clock cap of one oracle selection (0: none); what is done is kept
ORACLE2_URL=${ORACLE2_URL:-}          # Table 5's second selector: any OpenAI-compatible server (vLLM) serving
ORACLE2_MODEL=${ORACLE2_MODEL:-Llama-3.1-70B-Instruct}  # this model (empty URL: Table 5 has GPT-4o's rows only)
ORACLE2_FORMAT=${ORACLE2_FORMAT:-$ORACLE_FORMAT}
ORACLE2_ARGS=${ORACLE2_ARGS:-$ORACLE_ARGS}
TABLE4_ENVS=${TABLE4_ENVS-"babyai weather"}            # single-task ATLaS vs value estimation (value runs here)
TABLE5_ENVS=${TABLE5_ENVS-"alfworld babyai weather"}   # single-task ATLaS by ORACLE_MODEL vs ORACLE2_MODEL
VALUE_ARGS=${VALUE_ARGS:-}            # more value_estimate.py flags
BACKBONE_ROWS=${BACKBONE_ROWS:-"complete critical@$RATIO"}  # what the other backbones train (the paper's Table 7:
                                      # AgentTraj-L and ATLaS); any label of select/, e.g. add "random@0.3"
NPROC=${NPROC:-8}                     # torchrun processes (GPUs)
BATCH=${BATCH:-128}                   # global batch in trajectories
EPOCHS=${EPOCHS:-3}
LR=${LR:-2e-5}
MAX_LENGTH=${MAX_LENGTH:-8192}
TRAIN_ARGS=${TRAIN_ARGS:-}            # more train.py flags (e.g. --activation-checkpointing, --max-steps N)
EVAL_BASE=${EVAL_BASE:-1}             # 1: evaluate every untrained base model too (the reference rows)
MAX_CONTEXT=${MAX_CONTEXT:-4096}      # AgentGym: prompt + answer <= 4096 tokens
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-512}
EVAL_CONCURRENCY=${EVAL_CONCURRENCY:-16}  # episodes generated in one batch
EVAL_PARALLEL=${EVAL_PARALLEL:-0}     # 1: one evaluate.py per env at once, one thread each (CPU); 0: one
                                      # evaluate.py per model for all its envs (the model loads once)
TABLE6_ENVS=${TABLE6_ENVS:-"babyai maze"}  # the paper: 100 BabyAI and Maze tasks
TABLE6_N=${TABLE6_N:-100}             # trajectories per env restarted after each of their critical steps
PLAN=${PLAN:-0}                       # 1: print the plan (scripts/plan.py) and stop; nothing is run or written
PLAN_GPU=${PLAN_GPU:-A100}            # the plan's GPU (its bf16 peak from flops.py; paper: 4 x A100-80G)
PLAN_MFU=${PLAN_MFU:-0.4}             # the plan's model FLOPs utilisation
PY=${PY:-python}
set -euo pipefail
cd "$(dirname "$0")/.."

for s in $SELECTORS; do  # a misspelt selector would silently leave its rows out
    case $s in oracle|random|complement|perplexity|value) ;; *)
        echo "scripts/paper.sh: SELECTORS: $s is none of oracle random complement perplexity value" >&2; exit 2;; esac
done
server_names() { local kv; for kv in $ENV_SERVERS; do echo "${kv%%=*}"; done; }
if [ "$PLAN" = 1 ]; then  # every knob, as the run would use it; the plan checks what is missing (exit 1 then)
    exec $PY scripts/plan.py --out "$OUT" --model "$MODEL" --backbones $BACKBONES --backbone-rows $BACKBONE_ROWS \
        --train-data $TRAIN_DATA --train-envs $TRAIN_ENVS --heldout-envs $HELDOUT_ENVS --env-servers $ENV_SERVERS \
        --n-train "$N_TRAIN" --n-eval "$N_EVAL" --babyai-levels $BABYAI_LEVELS --ratio "$RATIO" --ratios $RATIOS \
        --random-ratios $RANDOM_RATIOS --selectors $SELECTORS --oracle-url "$ORACLE_URL" \
        --oracle-model "$ORACLE_MODEL" --oracle-format "$ORACLE_FORMAT" --oracle-ready "$ORACLE_READY" \
        --oracle2-url "$ORACLE2_URL" --oracle2-model "$ORACLE2_MODEL" --oracle2-format "$ORACLE2_FORMAT" \
        --table4-envs $TABLE4_ENVS --table5-envs $TABLE5_ENVS --table6-envs $TABLE6_ENVS --table6-n "$TABLE6_N" \
        --nproc "$NPROC" --batch "$BATCH" --epochs "$EPOCHS" --max-length "$MAX_LENGTH" --eval-base "$EVAL_BASE" \
        --gpu "$PLAN_GPU" --mfu "$PLAN_MFU"
fi
[ -n "$MODEL" ] || { echo "scripts/paper.sh: set MODEL to the base model folder" >&2; exit 2; }
[ -f "$MODEL/config.json" ] || {
    echo "scripts/paper.sh: MODEL=$MODEL is not a model folder (no config.json)" >&2; exit 2; }
name_of() { basename "$(cd "$1" && pwd)"; }  # a backbone's name: its folder's (the results' "backbone")
MAIN=$(name_of "$MODEL") OTHERS=() names=" $(name_of "$MODEL") "
for b in $BACKBONES; do
    [ -f "$b/config.json" ] || {
        echo "scripts/paper.sh: BACKBONES: $b is not a model folder (no config.json)" >&2; exit 2; }
    [ "$(cd "$b" && pwd)" = "$(cd "$MODEL" && pwd)" ] && continue
    case $names in *" $(name_of "$b") "*)  # the report tells backbones apart by their names
        echo "scripts/paper.sh: BACKBONES: two model folders are named $(name_of "$b")" >&2; exit 2;; esac
    OTHERS+=("$b") names+="$(name_of "$b") "
done
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
lines() { if [ -f "$1" ]; then grep -c . "$1" || true; else echo 0; fi; }  # lines FILE: its non-empty lines
in_list() { case " $2 " in *" $1 "*) return 0;; esac; return 1; }  # in_list WORD "LIST"
server_of() {  # server_of ENV: its AgentGym server URL from ENV_SERVERS, or nothing (built-in)
    local kv; for kv in $ENV_SERVERS; do [ "${kv%%=*}" = "$1" ] && { echo "${kv#*=}"; return; }; done; true
}
ALL_ENVS="$TRAIN_ENVS $HELDOUT_ENVS"

# ---- data: the training set and the test tasks of every env (an env that cannot be evaluated is refused here)
make_data() {
    $PY scripts/paper_data.py --out "$OUT/data" --train-envs $TRAIN_ENVS --heldout-envs $HELDOUT_ENVS \
        --train-data $TRAIN_DATA --n-train "$N_TRAIN" --n-eval "$N_EVAL" --babyai-levels $BABYAI_LEVELS \
        --servers $(server_names)
}
stage data make_data
DATA="$OUT/data/train.jsonl"

# ---- select
select_offline() {
    cp -n "$DATA" "$OUT/select/complete.jsonl" 2>/dev/null || true   # every step: AgentGym's SFT baseline
    local m
    if has random; then
        for m in $RANDOM_RATIOS; do
            $PY select.py --input "$DATA" --output "$OUT/select/random@$m.jsonl" --method random --ratio "$m" \
                | tail -n 2
        done
    fi
    if has perplexity && [ "$(lines "$OUT/select/perplexity@$RATIO.jsonl")" -ge "$(lines "$DATA")" ]; then
        echo "$OUT/select/perplexity@$RATIO.jsonl: every trajectory scored"
    elif has perplexity; then
        $PY perplexity.py --input "$DATA" --output "$OUT/select/perplexity@$RATIO.jsonl" --model "$MODEL" \
            --ratio "$RATIO" --max-length "$MAX_LENGTH" 2>&1 | grep -v "it/s\]" | tail -n 3
    fi
}
select_value() {  # value estimation per env of TABLE4_ENVS (the mixed training set: other envs' records are skipped)
    local env
    for env in $TABLE4_ENVS; do
        in_list "$env" "$TRAIN_ENVS" || continue   # said by the single-task stage
        [ -s "$OUT/select/value_$env.jsonl" ] && { echo "$OUT/select/value_$env.jsonl: exists"; continue; }
        local srv; srv=$(server_of "$env")
        $PY value_estimate.py --input "$DATA" --env "$env" ${srv:+--env-server "$srv"} --policy hf --model "$MODEL" \
            --max-context "$MAX_CONTEXT" --output "$OUT/select/value_$env.jsonl" $VALUE_ARGS \
            > "$OUT/logs/select_value_$env.log" 2>&1 || { tail -n 20 "$OUT/logs/select_value_$env.log"; return 1; }
        grep -v "it/s\]" "$OUT/logs/select_value_$env.log" | tail -n 3
    done
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

# ---- train (one function for every model): a selection with no loss token left is a loud skip of its row
train_one() {  # train_one TAG SELECTION.jsonl BASE_MODEL DIR
    local tag=$1 data=$2 base=$3 dir=$4 log="$OUT/logs/train_$1.log" rc=0
    [ -s "$data" ] || { loud "$data is missing or empty: no $tag row"; return 0; }
    if [ -f "$dir/final/config.json" ]; then echo "$dir/final: exists"; return; fi
    local resume=""   # a run cut by a kill goes on from its last save; one cut before any save starts over
    if [ -e "$dir/state/latest" ]; then resume="--resume"; elif [ -f "$dir/config.json" ]; then resume="--overwrite"; fi
    torchrun --nproc_per_node "$NPROC" train.py --data "$data" --model "$base" --output "$dir" \
        --epochs "$EPOCHS" --batch-size "$BATCH" --lr "$LR" --max-length "$MAX_LENGTH" --seed 0 $resume $TRAIN_ARGS \
        > "$log" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then  # train.py exits 3 when no record keeps a loss token (torchrun reports it as exitcode 3)
        if [ "$rc" = 3 ] || grep -Eq "exitcode +: 3 " "$log"; then
            loud "no $tag row: $(grep -m 1 '^train.py: ' "$log" || echo "train.py exited 3, see $log")"; return 0
        fi
        tail -n 30 "$log"; return 1
    fi
    grep -E "^(global batch|step |compute|[0-9]+ trajector)" "$log" | tail -n 4 || true
}

# ---- eval (one function for every model): each env of a list
eval_env() {  # eval_env TAG LABEL MODEL_DIR RESULTS_STEM ENV: results RESULTS_STEM_ENV.jsonl
    local tag=$1 label=$2 model=$3 env=$5 srv; srv=$(server_of "$5")
    local done=$(lines "$4_${env}.jsonl") want=$(lines "$OUT/data/${env}_tasks.txt")
    if [ "$done" -gt 0 ] && [ "$done" -ge "$want" ]; then  # every test task has its episode: nothing to load
        echo "$4_${env}.jsonl: $done of $want episodes: done" > "$OUT/logs/eval_${tag}_${env}.log"; return 0
    fi
    local threads=(); [ "$EVAL_PARALLEL" = 1 ] && threads=(env OMP_NUM_THREADS=1)
    "${threads[@]}" $PY evaluate.py --env "$env" ${srv:+--env-server "$srv"} --policy hf --model "$model" \
        --task-file "$OUT/data/${env}_tasks.txt" --concurrency "$EVAL_CONCURRENCY" --max-new-tokens "$MAX_NEW_TOKENS" \
        --max-context "$MAX_CONTEXT" --label "$label" --output "$4_${env}.jsonl" \
        > "$OUT/logs/eval_${tag}_${env}.log" 2>&1
}
eval_envs() {  # eval_envs TAG LABEL MODEL_DIR RESULTS_STEM "ENV...": one evaluate.py, the model loaded once
    local tag=$1 label=$2 model=$3 stem=$4 env todo=() srvs=()
    for env in $5; do
        local done=$(lines "${stem}_${env}.jsonl") want=$(lines "$OUT/data/${env}_tasks.txt")
        if [ "$done" -gt 0 ] && [ "$done" -ge "$want" ]; then echo "${stem}_${env}.jsonl: $done of $want episodes: done"
        else todo+=("$env"); local srv; srv=$(server_of "$env"); [ -n "$srv" ] && srvs+=("$env=$srv"); fi
    done
    [ ${#todo[@]} -eq 0 ] && return 0
    local envs; envs=$(IFS=,; echo "${todo[*]}")
    local servers; servers=$(IFS=,; echo "${srvs[*]}")
    $PY evaluate.py --env "$envs" ${servers:+--env-server "$servers"} --policy hf --model "$model" \
        --task-file "$OUT/data/{env}_tasks.txt" --concurrency "$EVAL_CONCURRENCY" --max-new-tokens "$MAX_NEW_TOKENS" \
        --max-context "$MAX_CONTEXT" --label "$label" --output "${stem}_{env}.jsonl" > "$OUT/logs/eval_${tag}.log" 2>&1
}
eval_one() {  # eval_one TAG LABEL MODEL_DIR RESULTS_STEM "ENV...": a model folder on every env of the list
    local tag=$1 label=$2 model=$3 stem=$4 env pids=() rc=0
    [ -f "$model/config.json" ] || { loud "$model is missing: no $tag row"; return 0; }
    mkdir -p "$(dirname "$stem")"
    if [ "$EVAL_PARALLEL" != 1 ]; then  # one process for every env (an 8B model loads once, not once per env)
        eval_envs "$tag" "$label" "$model" "$stem" "$5" || rc=1
        local lines=1; [ "$rc" = 0 ] || lines=20
        [ -f "$OUT/logs/eval_${tag}.log" ] && grep -E "episodes, success|^evaluate.py: " "$OUT/logs/eval_${tag}.log" \
            | tail -n "$lines" || true
        [ "$rc" = 0 ] || tail -n 20 "$OUT/logs/eval_${tag}.log"
        return $rc
    fi
    for env in $5; do eval_env "$tag" "$label" "$model" "$stem" "$env" & pids+=($!); done
    for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
    local lines=1; [ "$rc" = 0 ] || lines=20   # a failure shows the end of every env's log
    for env in $5; do tail -n "$lines" "$OUT/logs/eval_${tag}_${env}.log"; done
    return $rc
}
train_eval() {  # train_eval ROOT NAME SELECTION BASE_MODEL LABEL "ENV...": ROOT/train/NAME, ROOT/results/NAME_<env>
    local root=$1 name=$2 tag=${1#"$OUT"}; tag=${tag#/}; tag=${tag//\//_}${tag:+_}$2   # main rows: tag = NAME
    stage "train_$tag" train_one "$tag" "$3" "$4" "$root/train/$name"
    stage "eval_$tag" eval_one "$tag" "$5" "$root/train/$name/final" "$root/results/$name" "$6"
}
main_row() { train_eval "$OUT" "$1" "$OUT/select/$1.jsonl" "$MODEL" "$1" "$ALL_ENVS"; }  # main_row LABEL

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

# ---- single-task models (Tables 4, 5): one env's records of a selection, trained alone, evaluated on that env
take_all() {  # take_all INPUT OUTPUT ENV: every record of ENV in INPUT (JSONL: at most one a line)
    $PY scripts/take_env.py --input "$1" --output "$2" --env "$3" -n 0
}
single_select() {  # single_select ENV: that env's records of each selection under $OUT/single/ENV/select
    local env=$1 dir="$OUT/single/$1/select" m=$RATIO
    mkdir -p "$dir"
    take_all "$OUT/select/critical@$m.jsonl" "$dir/critical@$m.jsonl" "$env"
    if in_list "$env" "$TABLE4_ENVS" && has value && [ -s "$OUT/select/value_$env.jsonl" ]; then
        take_all "$OUT/select/value_$env.jsonl" "$dir/value.jsonl" "$env"
    fi
    if in_list "$env" "$TABLE5_ENVS" && [ -n "$ORACLE2_URL" ]; then  # the second selector, on this env's records
        take_all "$DATA" "$OUT/single/$env/train.jsonl" "$env"
        [ -f "$OUT/single/$env/train/oracle2-critical@$m/final/config.json" ] || \
            OPENAI_API_KEY=${OPENAI_API_KEY:-sk-local} $PY select.py --input "$OUT/single/$env/train.jsonl" \
                --output "$dir/oracle2-critical@$m.jsonl" --ratio "$m" --base-url "$ORACLE2_URL" \
                --model "$ORACLE2_MODEL" --response-format "$ORACLE2_FORMAT" $ORACLE2_ARGS \
                2>&1 | tee "$OUT/logs/select_oracle2_$env.log" | grep -v "it/s\]" | tail -n 6 || true
    fi
}
single_task() {  # single_task ENV
    local env=$1 root="$OUT/single/$1" m=$RATIO
    if ! in_list "$env" "$TRAIN_ENVS"; then
        loud "$env is not in TRAIN_ENVS (no records to train on): no single-task $env cells in Tables 4, 5"; return 0
    fi
    [ -s "$OUT/select/critical@$m.jsonl" ] || { loud "no critical@$m selection: no single-task $env rows"; return 0; }
    stage "single_select_$env" single_select "$env"
    if [ ! -s "$root/select/critical@$m.jsonl" ]; then
        loud "the oracle's selection has no $env record: no single-task $env rows (Tables 4, 5)"; return 0
    fi
    train_eval "$root" "critical@$m" "$root/select/critical@$m.jsonl" "$MODEL" "critical@$m" "$env"
    if in_list "$env" "$TABLE4_ENVS" && has value; then
        train_eval "$root" value "$root/select/value.jsonl" "$MODEL" value "$env"
    fi
    if in_list "$env" "$TABLE5_ENVS"; then
        if [ -n "$ORACLE2_URL" ]; then
            train_eval "$root" "oracle2-critical@$m" "$root/select/oracle2-critical@$m.jsonl" "$MODEL" \
                "critical@$m" "$env"
        else
            loud "no ORACLE2_URL: Table 5 has no $ORACLE2_MODEL column for $env"
        fi
    fi
}

# ---- the run: offline selectors first (an oracle still starting, as the demo's, gets that time), then the
# oracle's rows, the single-task models, the other backbones
stage select_offline select_offline
if has value; then stage select_value select_value; fi
main_row complete
if has random; then for m in $RANDOM_RATIOS; do main_row "random@$m"; done; fi
if has perplexity; then main_row "perplexity@$RATIO"; fi
if [ "$EVAL_BASE" = 1 ]; then stage eval_base eval_one base base "$MODEL" "$OUT/results/base" "$ALL_ENVS"; fi
if has oracle; then
    stage select_oracle select_oracle
    for m in $RATIOS; do main_row "critical@$m"; done
    if has complement; then main_row "noncritical@$RATIO"; fi
    stage table6 table6
    for env in $(echo $TABLE4_ENVS $TABLE5_ENVS | tr ' ' '\n' | awk '!seen[$0]++'); do single_task "$env"; done
else
    loud "no oracle in SELECTORS: the critical rows, Table 2's non-critical row and Tables 4, 5, 6 are missing"
fi
for b in "${OTHERS[@]}"; do  # Table 7 and Figure 2: the same selection files on another base model
    root="$OUT/backbones/$(name_of "$b")"
    for label in $BACKBONE_ROWS; do train_eval "$root" "$label" "$OUT/select/$label.jsonl" "$b" "$label" "$ALL_ENVS"; done
    if [ "$EVAL_BASE" = 1 ]; then
        stage "eval_$(name_of "$b")_base" eval_one "$(name_of "$b")_base" base "$b" "$root/results/base" "$ALL_ENVS"
    fi
done

# ---- report: every result file in one report; the main backbone's rows make Tables 1, 2, 3, 6
report() {
    local results=() t6=() f
    for f in "$OUT"/results/*.jsonl "$OUT"/backbones/*/results/*.jsonl "$OUT"/single/*/results/*.jsonl; do
        [ -f "$f" ] && results+=("$f")
    done
    for f in "$OUT"/table6/*.jsonl; do case $f in *_selection.jsonl|*'*'*) ;; *) t6+=("$f");; esac; done
    [ ${#results[@]} -gt 0 ] || { loud "no model was evaluated: no tables"; return 0; }
    $PY evaluate.py --report "${results[@]}" "${t6[@]}" --backbone "$MAIN" --report-png "$OUT/table1.png" \
        --held-out "$(echo $HELDOUT_ENVS | tr ' ' ',')" | tee "$OUT/report.txt"
    $PY analyze.py "$OUT"/select/*.jsonl --tokenizer "$MODEL" --json "$OUT/shares.json" | tee "$OUT/shares.txt"
}
stage report report
printf 'total\t%s\n' "$(( $(date +%s) - T_START ))" >> "$TIMINGS"
say "done in $(( $(date +%s) - T_START )) s: $OUT/report.txt, $OUT/shares.txt, $OUT/table1.png"
