"""The HF policy of agent.py: a local transformers causal LM with its chat template, all running episodes
generated in one batch per round, each episode's key/value states kept between rounds (the same tokens as a full
re-prefill, tests/test_agent.py). Imported by agent.make_policy (and as agent.HFPolicy) only when asked for.
"""
from collections import Counter

from agent import answer_budget, load_chat_tokenizer, prompt_ids


class HFPolicy:
    """A local transformers causal LM with its chat template; all running episodes are generated in one batch.

    Decoding is pinned: the checkpoint's generation_config.json (train.py copies the base model's, e.g. Qwen2.5's
    repetition_penalty 1.05, top_p 0.8, top_k 20) is replaced at load by one that keeps only its stop tokens, and
    every call passes a full GenerationConfig: greedy, or sampling at exactly `temperature` with top_p 1, top_k
    off and no penalty. Context rule: answer_budget per episode (prompt + answer <= max_context).

    KV-cache reuse (kv_cache=True): each running episode (keyed by its env object) keeps the key/value states of
    the tokens it has seen. A round renders the conversation as usual, keeps the cached states of the longest
    common token prefix with it, feeds only the rest but the last token (the end of the last answer as the template
    renders it, the new observation, the generation prompt) in a forward pass of its own, then all episodes decode
    in one batch from their states, left-padded into one preallocated cache (_static_cache). The model thus sees
    exactly the tokens of a full re-prefill: greedy outputs are the same tokens (tests/test_agent.py). A template
    that rewrites history (the previous prompt is no longer a prefix) falls back to a prefill from the first
    differing token, counted in stats["kv_fallbacks"].
    forget(envs) frees the states of finished episodes (run_episodes calls it). kv_cache=False: re-prefill the
    whole conversation every round (the reference the bench compares against)."""
    name = "hf"

    def __init__(self, model_path, max_new_tokens=512, max_context=4096, temperature=0.0, device=None,
                 dtype="auto", kv_cache=True, tokenizer=None, verbose=True):
        import torch
        from transformers import AutoModelForCausalLM, GenerationConfig
        from devices import resolve_dtype
        self.torch = torch
        self.tok = tokenizer or load_chat_tokenizer(model_path)
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch_dtype, why = resolve_dtype(dtype, self.device.type)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype).to(self.device).eval()
        eos = self.model.generation_config.eos_token_id  # the checkpoint's stop tokens (e.g. Llama-3.1: 3 of them)
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tok.eos_token_id is not None and self.tok.eos_token_id not in eos:
            eos.append(self.tok.eos_token_id)
        self.eos, self.pad = eos, self.tok.pad_token_id
        # generate() fills every field a passed config leaves unset from model.generation_config: keep none of it
        self.model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=self.pad,
                                                        bos_token_id=self.tok.bos_token_id)
        self.max_new_tokens, self.max_context, self.temperature = max_new_tokens, max_context, temperature
        self.static = kv_reusable(self.model.config, max_context)  # plain full attention: a preallocated cache
        self.kv_cache = bool(kv_cache) and self.static
        self.caches = {}  # env key -> (tokens with cached states, length of the prompt they ended in, [(k, v)])
        self.stats = Counter()
        self.last_tokens = []  # the generated token ids of the last call (None for a "context" episode)
        if verbose:
            print(f"hf policy: {model_path} on {self.device.type} in {str(torch_dtype).replace('torch.', '')} "
                  f"({why}); KV-cache reuse {'on' if self.kv_cache else 'off'}", flush=True)

    def forget(self, envs):
        for env in envs:
            self.caches.pop(id(env), None)

    def __call__(self, conversations, envs, temperature=None):
        temperature = self.temperature if temperature is None else temperature
        ids = [prompt_ids(self.tok, c) for c in conversations]
        budgets = [answer_budget(len(x), self.max_new_tokens, self.max_context) for x in ids]
        live = [i for i, b in enumerate(budgets) if b is not None]
        self.forget([envs[i] for i, b in enumerate(budgets) if b is None])
        self.last_tokens = [None] * len(ids)
        if live:
            keys = [id(envs[i]) for i in live]
            args = ([ids[i] for i in live], [budgets[i] for i in live], temperature)
            reuse = self.kv_cache and len(set(keys)) == len(keys) and all(len(ids[i]) > 1 for i in live)
            gen = self._generate_kv(*args, keys) if reuse else self._generate_full(*args)
            for i, g in zip(live, gen):
                self.last_tokens[i] = g
        return [None if g is None else self.tok.decode(g, skip_special_tokens=True).strip()
                for g in self.last_tokens]

    # ---- generation
    def _config(self, temperature, max_new_tokens):
        from transformers import GenerationConfig
        # disable_compile: with a preallocated cache generate() would torch.compile the decoding step on a GPU, and
        # recompile it every round (the cache's length changes with the conversation)
        common = dict(max_new_tokens=max_new_tokens, num_beams=1, repetition_penalty=1.0, no_repeat_ngram_size=0,
                      eos_token_id=self.eos, pad_token_id=self.pad, disable_compile=True)
        if temperature and temperature > 0:
            return GenerationConfig(do_sample=True, temperature=temperature, top_p=1.0, top_k=0, typical_p=1.0,
                                    **common)
        return GenerationConfig(do_sample=False, **common)

    def _static_cache(self, length):
        """A preallocated cache of `length` positions per row (transformers' StaticCache): each decoded token is
        written in place, where the DynamicCache that generate() makes by default concatenates every layer's whole
        past into a new tensor per token (measured on SmolLM2-135M, batch 2, 2.5k tokens of context, 2 CPU cores:
        128 -> 110 ms per decoded token). Only for models of plain full attention (kv_reusable); None otherwise,
        and generate() makes its default cache."""
        from transformers import StaticCache
        return StaticCache(config=self.model.config, max_cache_len=length) if self.static else None

    def _generate(self, rows, width, budgets, temperature, past=None):
        """generate() on left-padded `rows` (token lists), each row stopping at its own budget."""
        torch = self.torch
        input_ids = torch.tensor([[self.pad] * (width - len(x)) + x for x in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in rows], device=self.device)
        stop = row_budget_criteria(width, torch.tensor(budgets, device=self.device))
        if past is None:  # a full prefill: generate() fills the preallocated cache, then decodes into it
            past = self._static_cache(width + max(budgets))
        with torch.no_grad():
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, past_key_values=past,
                                      generation_config=self._config(temperature, max(budgets)),
                                      stopping_criteria=stop)
        return out[:, width:].tolist()

    def _cut(self, gen, budget):
        """A row's answer tokens: up to its budget, through its first stop token (later ones are padding)."""
        gen = gen[:budget]
        for k, t in enumerate(gen):
            if t in self.eos:
                return gen[:k + 1]
        return gen

    def _generate_full(self, ids, budgets, temperature):
        self.stats["prefill_tokens"] += sum(len(x) for x in ids)
        gen = self._generate(ids, max(len(x) for x in ids), budgets, temperature)
        return [self._cut(g, b) for g, b in zip(gen, budgets)]

    def _prefill(self, ids, key):
        """[(k, v)] per layer: the states of ids[:-1], from the episode's cache where its tokens agree."""
        from transformers import DynamicCache
        n = len(ids) - 1
        toks, prompt_len, layers = self.caches.pop(key, (None, 0, None))
        p = 0
        if toks is not None:
            p = min(common_prefix(toks, ids), n)
            self.stats["kv_fallbacks"] += p < min(prompt_len, n)  # the template rewrote earlier turns
        cache = DynamicCache()
        if p > 0:
            for li, (k, v) in enumerate(layers):
                cache.update(k[:, :, :p], v[:, :, :p], li)
        if p < n:
            with self.torch.no_grad():
                self.model(input_ids=self.torch.tensor([ids[p:n]], device=self.device), past_key_values=cache,
                           use_cache=True, logits_to_keep=1)
        self.stats["reused_tokens"] += p
        self.stats["prefill_tokens"] += len(ids) - p
        return kv_layers(cache)

    def _generate_kv(self, ids, budgets, temperature, keys):
        torch = self.torch
        pasts = [self._prefill(x, key) for x, key in zip(ids, keys)]
        width = max(len(x) for x in ids)  # the cache holds width - 1 columns, each row's states right-aligned
        past = self._static_cache(width - 1 + max(budgets))
        for li, layer in enumerate(past.layers):
            pad = lambda t: torch.nn.functional.pad(t, (0, 0, width - 1 - t.shape[2], 0))
            layer.update(torch.cat([pad(p[li][0]) for p in pasts]), torch.cat([pad(p[li][1]) for p in pasts]))
        del pasts
        gen = self._generate(ids, width, budgets, temperature, past)
        n_gen = len(gen[0])
        kv = kv_layers(past)
        assert int(past.get_seq_length()) == width + n_gen - 1, "generate() did not extend the cache it was given"
        answers = []
        for row, (x, budget, key) in enumerate(zip(ids, budgets, keys)):
            g = self._cut(gen[row], budget)
            n_kv = len(x) + min(len(g), n_gen - 1)  # the last generated token was never fed back
            a = width - len(x)
            self.caches[key] = ((x + g)[:n_kv], len(x), [(k[row:row + 1, :, a:a + n_kv].clone(),
                                                           v[row:row + 1, :, a:a + n_kv].clone()) for k, v in kv])
            answers.append(g)
        return answers


def common_prefix(a, b):
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def kv_layers(cache):
    return [(layer.keys, layer.values) for layer in cache.layers]


def kv_reusable(config, max_context):
    """True when every layer attends to the full past within max_context (plain KV states that can be cut and
    padded): full attention, or a sliding window no shorter than the context. Not for recurrent or chunked
    layers."""
    config = config.get_text_config(decoder=True)
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None) or ["full_attention"]
    for t in set(types) | ({"sliding_attention"} if window and getattr(config, "use_sliding_window", True) else set()):
        if t == "full_attention" or (t == "sliding_attention" and max_context and window and window >= max_context):
            continue
        return False
    return True


def row_budget_criteria(start, budgets):
    """A StoppingCriteriaList that ends row i once it has generated budgets[i] tokens."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class RowBudget(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return (input_ids.shape[1] - start) >= budgets

    return StoppingCriteriaList([RowBudget()])
