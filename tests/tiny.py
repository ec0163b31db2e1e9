"""Tiny models and tokenizers for the CPU tests, built locally in about a second (no Hub, no network).

Three families, one per backbone of the paper, each with the chat template of the real model written out by hand
(system prompt handling and generation prompt as in the published templates, tool calling left out):

    llama    Llama-3.1-Instruct   <|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\n...<|eot_id|>
    qwen     Qwen2.5-Instruct     <|im_start|>user\\n...<|im_end|>\\n
    mistral  Mistral-7B-v0.3      <s>[INST] ...[/INST] ...</s>

Use from a test:

    from tests.tiny import tiny_tokenizer, tiny_model, save_tiny, make_records
    tok = tiny_tokenizer("qwen"); model = tiny_model("qwen", tok)
    folder = save_tiny(tmp_path / "qwen", "qwen")      # then: python train.py --model <folder> ...

or from the shell (writes OUT_DIR/<family>):  python tests/tiny.py OUT_DIR [llama qwen mistral]
"""
import atexit
import functools
import os
import random
import shutil
import sys
import tempfile

FAMILIES = ("llama", "qwen", "mistral")

# Chat templates, transcribed from the models' tokenizer_config.json (tools branches dropped).
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if not date_string is defined %}{%- set date_string = '26 Jul 2024' %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content']|trim %}{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}"
    "{{- 'Today Date: ' + date_string + '\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content']|trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or (message.role == 'assistant') %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

MISTRAL_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] %}{%- set loop_messages = messages[1:] %}"
    "{%- else %}{%- set loop_messages = messages %}{%- endif %}"
    "{{- bos_token }}"
    "{%- for message in loop_messages %}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant...') }}"
    "{%- endif %}"
    "{%- if message['role'] == 'user' %}"
    "{%- if loop.last and system_message is defined %}"
    "{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}"
    "{%- else %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- ' ' + message['content']|trim + eos_token }}"
    "{%- else %}"
    "{{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}"
    "{%- endif %}"
    "{%- endfor %}"
)

# special tokens, the template, and the roles of bos/eos/pad as in each real tokenizer
SPECS = {
    "llama": dict(special=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                           "<|eot_id|>"],
                  bos="<|begin_of_text|>", eos="<|eot_id|>", pad=None, template=LLAMA3_TEMPLATE,
                  eot="<|eot_id|>"),
    "qwen": dict(special=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                 bos=None, eos="<|im_end|>", pad="<|endoftext|>", template=QWEN25_TEMPLATE, eot="<|im_end|>"),
    "mistral": dict(special=["<unk>", "<s>", "</s>", "[INST]", "[/INST]"],
                    bos="<s>", eos="</s>", pad=None, template=MISTRAL_TEMPLATE, eot="</s>"),
}

WORDS = ("go to the red door pick up blue key open box you see a room with ball agent thought action observation "
         "north south east west take put look inventory drawer cabinet shelf mug apple search click buy product "
         "price size color item result page next back done nothing happens in on at it is are was of and or not "
         "Thought: Action: Observation: I need to find then use from your task here there 0 1 2 3 4 5 6 7 8 9 "
         "café naïve 東京 — ( ) [ ] { } , . ; ! ? ' \"").split()


def _corpus(n=400, seed=0):
    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) for _ in range(n)]
    return lines + ["\n".join(lines[i:i + 3]) for i in range(0, n, 3)]


@functools.lru_cache(maxsize=None)
def _trained(family, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    spec = SPECS[family]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=spec["special"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok.to_str()


def tiny_tokenizer(family, vocab_size=1024):
    """A byte-level BPE fast tokenizer trained on a small word soup, with the family's special tokens and chat
    template. Any Unicode text round-trips (byte fallback), so records with arbitrary text can be tokenised.
    It is loaded back from a folder through AutoTokenizer, exactly as a stage loads it from a save_tiny folder
    (transformers picks the class by model type: the qwen folder gets Qwen2Tokenizer, with Qwen's own
    pre-tokenizer), so tests and stages see the very same tokens."""
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(_tokenizer_dir(family, vocab_size))


@functools.lru_cache(maxsize=None)
def _tokenizer_dir(family, vocab_size):
    folder = tempfile.mkdtemp(prefix=f"tiny_tokenizer_{family}_")
    atexit.register(shutil.rmtree, folder, True)
    tok = _build_tokenizer(family, vocab_size)
    tok.save_pretrained(folder)
    tiny_config(family, tok).save_pretrained(folder)  # the model type decides the tokenizer class
    return folder


def _build_tokenizer(family, vocab_size):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast
    spec = SPECS[family]
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_trained(family, vocab_size)),
                                  bos_token=spec["bos"], eos_token=spec["eos"], pad_token=spec["pad"],
                                  unk_token="<unk>" if family == "mistral" else None,
                                  additional_special_tokens=[t for t in spec["special"]
                                                             if t not in (spec["bos"], spec["eos"], spec["pad"])],
                                  model_max_length=131072)
    tok.chat_template = spec["template"]
    return tok


def tiny_config(family, tokenizer, hidden=64, layers=2, **kw):
    """A 2-layer, 64-wide config of the family's architecture (Qwen ties embeddings, like Qwen2.5-0.5B)."""
    from transformers import LlamaConfig, MistralConfig, Qwen2Config
    cls = {"llama": LlamaConfig, "qwen": Qwen2Config, "mistral": MistralConfig}[family]
    args = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=4096, tie_word_embeddings=(family == "qwen"),
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)
    args.update(kw)
    return cls(**args)


def tiny_model(family, tokenizer=None, seed=0, **kw):
    """A randomly initialised (seeded) fp32 model of the family, e.g. LlamaForCausalLM, ~0.2M parameters."""
    import torch
    from transformers import AutoModelForCausalLM
    tokenizer = tokenizer or tiny_tokenizer(family)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, tokenizer, **kw), dtype=torch.float32)
    return model.eval()


def save_tiny(folder, family, seed=0, **kw):
    """Write a from_pretrained-loadable folder (model + tokenizer + chat template); returns its path as str."""
    folder = str(folder)
    tok = tiny_tokenizer(family)
    tiny_model(family, tok, seed=seed, **kw).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def make_records(n, seed=0, min_steps=1, max_steps=6, words=(3, 25), loss_false_preamble=True):
    """n AgentGym-style records: instruction, "Ok." (loss false), then observation/action pairs (loss true)."""
    rng = random.Random(seed)
    say = lambda: " ".join(rng.choice(WORDS) for _ in range(rng.randint(*words)))
    records = []
    for i in range(n):
        conv = [{"from": "human", "loss": None, "value": "Your task: " + say()}]
        if loss_false_preamble:
            conv.append({"from": "gpt", "loss": False, "value": "Ok."})
            conv.append({"from": "human", "loss": None, "value": "Observation: " + say()})
        for _ in range(rng.randint(min_steps, max_steps)):
            conv.append({"from": "gpt", "loss": True, "value": "Thought: " + say() + "\nAction: " + say()})
            conv.append({"from": "human", "loss": None, "value": "Observation: " + say()})
        conv.pop()  # trajectories end on the agent's last action
        records.append({"item_id": f"tiny_{i}", "conversations": conv})
    return records


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "tiny_model"
    for fam in (sys.argv[2:] or FAMILIES):
        print(save_tiny(os.path.join(out, fam), fam))
