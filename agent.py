"""The agent-environment loop shared by evaluate.py and value_estimate.py, and the policies that drive it.

An episode is built exactly like an AgentTraj-L conversation (AgentGym's BaseTask._generate_experience_one):

    human  env.instruction()          loss null
    gpt    env.ack                    loss false
    human  env.reset(task_id)         loss null     (the first observation)
    gpt    <policy turn>              loss true     } repeated until the env says done, env.max_rounds assistant
    human  <observation>              loss null     } turns, or the policy's context limit
    ...

The episode's reward is the last reward the env returned; success is full reward (envs.success).

API
    run_episode(env, policy, task_id, replay=None, temperature=None, max_rounds=None) -> dict
        One episode on an env instance. `replay` is a list of assistant turns (strings, e.g. the expert turns
        of a recorded trajectory up to step t) that are sent to the env first, in order, before the policy
        takes over; they count as rounds and appear in the conversation like any other turn.
        `temperature` is handed to the policy (None = the policy's own default: greedy for openai/hf).
    run_episodes(make_env, policy, jobs, concurrency=1, temperature=None, max_rounds=None, progress=...)
        Yields result dicts as episodes finish (in completion order). `jobs` is a list of dicts
        {"task_id": int, "replay": [str, ...] (optional), "key": anything (optional, copied to the result)}.
        `make_env()` builds one env instance per concurrency slot (instances are reused across episodes).
        Episodes advance in lockstep rounds: the policy gets the conversations of all running episodes in one
        call (one batched generate for hf, parallel requests for openai), then all envs step in parallel
        threads. So --concurrency N gives N-way batching and N-way env parallelism.

    Result dict: item_id ("<env>_<task_id>", AgentGym's naming), task_id, env, reward, success (0/1),
    rounds (assistant turns, replayed ones included), replayed, end ("done" | "max_rounds" | "context" |
    "policy_error"), format_errors (assistant turns without "Action:"), error (message or None),
    conversations (the AgentTraj-L conversation), key (if given).

Policies: callables policy(conversations, envs, temperature=None) -> list of assistant turns (str), or None for
an episode whose prompt no longer fits the policy's context (the episode then ends with end="context"); a policy
may have forget(envs), called when those envs' episodes end (the hf policy frees their KV caches):
    make_policy(kind, model=None, ...)               the one factory of evaluate.py and value_estimate.py
    ExpertPolicy()                                   env.expert_turn() (built-in envs only)
    OpenAIPolicy(model, base_url, api_key, ...)      any OpenAI-compatible chat endpoint (vLLM, llama.cpp, ...)
    HFPolicy(model_path, ...)                        local transformers model, one batch per round, KV-cache reuse
                                                     (hf_policy.py; agent.HFPolicy and agent.kv_reusable load it)
Both model policies decode as AgentGym does, whatever the checkpoint's generation_config.json says: greedy by
default; sampling (value_estimate's rollouts) at exactly the temperature asked with top_p 1, no top-k, no
repetition penalty. Both apply one context rule (answer_budget): prompt + answer <= max_context (AgentGym: 4096),
the answer budget shrinks to what the prompt leaves (at most max_new_tokens), and an episode ends as "context"
only when the prompt alone no longer fits.
A policy error on one episode (a bad response, a server error after retries) ends that episode with
end="policy_error" and is counted; an unreachable server raises PolicyError at once (no hang: timeouts).

Layout: the loop first (Episode, run_episodes, run_episode), then the policies and make_policy; the HF policy's
serving machinery (batched generate, the preallocated KV cache) is hf_policy.py.
"""
import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

from envs import ACK, success as is_success
from trajectory import chat_messages, use_template_kwargs


class PolicyError(RuntimeError):
    """The policy cannot work at all (e.g. the model server is unreachable): stop the run with this message."""


def turn(role, value, loss):
    return {"from": role, "loss": loss, "value": value}


# ----------------------------------------------------------------------------- the loop

class Episode:
    """The state of one running episode."""

    def __init__(self, env, job):
        self.env, self.job = env, job
        self.task_id = int(job["task_id"])
        self.replay = list(job.get("replay") or [])
        self.conv, self.reward, self.done, self.rounds = [], 0.0, False, 0
        self.end, self.error, self.format_errors, self.t0 = None, None, 0, time.time()

    def reset(self):
        env = self.env
        first = env.reset(self.task_id)
        self.conv = [turn("human", env.instruction(), None), turn("gpt", getattr(env, "ack", ACK), False),
                     turn("human", first, None)]

    def act(self, text, max_rounds):
        """Send one assistant turn to the env and record it with the env's answer."""
        self.conv.append(turn("gpt", text, True))
        if "Action:" not in text:
            self.format_errors += 1
        obs, reward, done = self.env.step(text)
        self.conv.append(turn("human", obs, None))
        self.reward, self.rounds = float(reward), self.rounds + 1
        if done:
            self.finish("done")
        elif self.rounds >= max_rounds:
            self.finish("max_rounds")

    def replay_all(self, max_rounds):
        for text in self.replay:
            if self.done:
                break
            self.act(text, max_rounds)

    def finish(self, end, error=None):
        self.done, self.end, self.error = True, end, error

    def result(self):
        env = self.env
        out = {"item_id": f"{env.name}_{self.task_id}", "task_id": self.task_id, "env": env.name,
               "reward": self.reward, "success": int(is_success(env.name, self.reward)), "rounds": self.rounds,
               "replayed": len(self.replay), "end": self.end, "format_errors": self.format_errors,
               "error": self.error, "seconds": round(time.time() - self.t0, 3), "conversations": self.conv}
        if "key" in self.job:
            out["key"] = self.job["key"]
        return out


def run_episodes(make_env, policy, jobs, concurrency=1, temperature=None, max_rounds=None, progress=None):
    """Run `jobs` with up to `concurrency` episodes at a time; yield each result dict as it finishes."""
    jobs = list(jobs)
    free = []
    try:
        for _ in range(max(1, min(concurrency, len(jobs)))):
            free.append(make_env())
    except BaseException:  # the envs made so far (a server-side env each) are closed before the error goes up
        _close_all(policy, free)
        raise
    pending = list(reversed(jobs))
    running, starting = [], []
    with ThreadPoolExecutor(len(free)) as pool:
        try:
            while pending or running:
                # fill free slots: reset + replay in parallel (resets can be slow, e.g. SciWorld)
                starting = []
                while pending and free:
                    starting.append(Episode(free.pop(), pending.pop()))
                for ep, exc in zip(starting, pool.map(_start, starting, [max_rounds] * len(starting))):
                    if exc is not None:
                        raise exc  # a task the env cannot reset is an error of the caller (bad task id)
                running += starting
                starting = []
                for ep in [ep for ep in running if ep.done]:
                    running.remove(ep)
                    free.append(ep.env)
                    release(policy, ep.env)
                    yield ep.result()
                if not running:
                    continue
                # one batched policy call for every running episode, then all envs step in parallel
                turns = policy([ep.conv for ep in running], [ep.env for ep in running], temperature=temperature)
                stepping = []
                for ep, text in zip(running, turns):
                    if text is None:
                        ep.finish("context")
                    elif isinstance(text, Exception):
                        ep.finish("policy_error", f"{type(text).__name__}: {text}")
                    else:
                        stepping.append((ep, text))
                list(pool.map(lambda a: a[0].act(a[1], max_rounds or a[0].env.max_rounds), stepping))
                for ep in [ep for ep in running if ep.done]:
                    running.remove(ep)
                    free.append(ep.env)
                    release(policy, ep.env)
                    yield ep.result()
                if progress is not None:
                    progress.set_postfix(running=len(running), refresh=False)
        finally:  # every env, also those of episodes whose reset failed (still in `starting`)
            _close_all(policy, free + [ep.env for ep in running + starting])


def _close_all(policy, envs):
    for env in envs:
        release(policy, env)
        try:
            env.close()
        except Exception:
            pass


def release(policy, env):
    """Tell the policy that the episode on `env` ended (the hf policy frees its KV cache)."""
    forget = getattr(policy, "forget", None)
    if forget is not None:
        forget([env])


def _start(ep, max_rounds):
    try:
        ep.reset()
        ep.replay_all(max_rounds or ep.env.max_rounds)
        return None
    except Exception as e:
        return e


def run_episode(env, policy, task_id, replay=None, temperature=None, max_rounds=None):
    """One episode on `env` (see the module docstring); returns its result dict. The env is not closed."""
    ep = Episode(env, {"task_id": task_id, "replay": replay})
    ep.reset()
    limit = max_rounds or env.max_rounds
    ep.replay_all(limit)
    while not ep.done:
        text = policy([ep.conv], [env], temperature=temperature)[0]
        if text is None:
            ep.finish("context")
        elif isinstance(text, Exception):
            ep.finish("policy_error", f"{type(text).__name__}: {text}")
        else:
            ep.act(text, limit)
    release(policy, env)
    return ep.result()


# ----------------------------------------------------------------------------- policies

class ExpertPolicy:
    name = "expert"

    def __call__(self, conversations, envs, temperature=None):
        return [env.expert_turn() for env in envs]


def make_policy(kind, model=None, base_url="http://127.0.0.1:8000/v1", api_key="EMPTY", max_new_tokens=512,
                max_context=4096, temperature=0.0, timeout=120.0, dtype="auto", template_kwargs=None):
    """The policy of evaluate.py and value_estimate.py: "expert", "openai" (model = the served name, or the
    served local folder, whose tokenizer then counts prompt tokens) or "hf" (model = a local folder). Bad settings
    raise ValueError with one line, before any weights are loaded. `template_kwargs` (--chat-template-kwargs)
    go to every render of the chat template: the local tokenizer's, and a served model's as vLLM's
    chat_template_kwargs."""
    if kind == "expert":
        return ExpertPolicy()
    if kind not in ("openai", "hf"):
        raise ValueError(f"unknown policy {kind!r}: expected expert, openai or hf")
    if not model:
        raise ValueError(f"--policy {kind} needs --model ("
                         + ("a local model folder)" if kind == "hf" else "the served model name or its folder)"))
    if max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    if max_context is not None and max_context < 0:
        raise ValueError(f"--max-context must be >= 0 (0: no limit), got {max_context}")
    if temperature < 0:
        raise ValueError(f"--temperature must be >= 0, got {temperature}")
    if kind == "openai":
        tokenizer = load_chat_tokenizer(model) if os.path.isdir(model) else None
        policy = OpenAIPolicy(model, base_url, api_key, max_tokens=max_new_tokens, temperature=temperature,
                              timeout=timeout, max_context=max_context,
                              tokenizer=tokenizer and use_template_kwargs(tokenizer, template_kwargs))
        policy.template_kwargs = dict(template_kwargs or {})
        return policy
    if dtype not in ("auto", "bfloat16", "float32"):
        raise ValueError(f"--dtype {dtype!r}: expected auto, bfloat16 or float32")
    tokenizer = use_template_kwargs(load_chat_tokenizer(model), template_kwargs)
    from hf_policy import HFPolicy
    return HFPolicy(model, max_new_tokens=max_new_tokens, max_context=max_context, temperature=temperature,
                    dtype=dtype, tokenizer=tokenizer)


def to_messages(conversation):
    return chat_messages({"conversations": conversation})


def prompt_ids(tokenizer, conversation):
    """The token ids of the conversation rendered by the model's own chat template, ending in the generation
    prompt, exactly as vLLM renders a chat request (template text, then tokens without extra special tokens)."""
    text = tokenizer.apply_chat_template(to_messages(conversation), add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def answer_budget(n_prompt, max_new_tokens, max_context):
    """The context rule of both backends (AgentGym: prompt + answer <= 4096 tokens): the answer may use what the
    prompt leaves, at most max_new_tokens; None when the prompt alone leaves no room for one token (the episode
    then ends with end="context"). max_context 0/None: no rule (max_new_tokens)."""
    if not max_context:
        return max_new_tokens
    if n_prompt >= max_context:
        return None
    return min(max_new_tokens, max_context - n_prompt)


def load_chat_tokenizer(folder):
    """The tokenizer of a local model folder; ValueError (one line) when it cannot be loaded or has no chat
    template. Reads no weights."""
    if not os.path.isdir(folder):
        raise ValueError(f"{folder}: no such model folder")
    if not os.path.exists(os.path.join(folder, "config.json")):
        raise ValueError(f"{folder}: not a transformers model folder (no config.json)")
    from transformers import AutoTokenizer
    try:
        tok = AutoTokenizer.from_pretrained(folder)
    except Exception as e:
        raise ValueError(f"{folder}: cannot load its tokenizer ({type(e).__name__}: "
                         f"{(str(e).strip().splitlines() or [''])[0]})") from None
    if not getattr(tok, "chat_template", None):
        raise ValueError(f"{folder}: the tokenizer has no chat template (episodes are rendered with the model's "
                         f"own template: copy chat_template.jinja or tokenizer_config.json from its base model)")
    return tok


class OpenAIPolicy:
    """Chat completions from any OpenAI-compatible server (vLLM, llama.cpp, ...).

    Decoding is pinned in every request, so the server's defaults (vLLM loads the checkpoint's
    generation_config.json unless served with --generation-config vllm; llama.cpp has top_k 40, min_p 0.05, and
    llama-cpp-python repeat_penalty 1.1 in most versions) never apply: temperature as asked (0 = greedy), top_p 1
    and no penalties (standard OpenAI fields), plus in `extra_body`, which only non-OpenAI servers read: top_k 0
    (disabled), min_p 0, repetition_penalty 1 (vLLM) and repeat_penalty 1 (llama.cpp). vLLM ignores the field it
    does not know (with a warning in its log); older vLLMs reject top_k 0 ("must be -1 (disable)"): the policy then
    sends top_k -1.
    `server_extras` None sends `extra_body` to every server but api.openai.com (whose API rejects unknown fields).

    Context rule (answer_budget): with max_context set, each request's max_tokens is what the prompt leaves, and
    a prompt that no longer fits ends its episode without a request. The prompt is counted with `tokenizer` (the
    served model folder's, when --model is a local folder) or else with the server's /tokenize endpoint (vLLM's);
    max_context None/0 leaves the limit to the server (its context error then ends the episode as "context")."""
    name = "openai"

    def __init__(self, model, base_url, api_key="EMPTY", max_tokens=512, temperature=0.0, timeout=120.0,
                 max_retries=2, workers=64, max_context=None, tokenizer=None, server_extras=None):
        import openai
        self.openai = openai
        self.model, self.base_url, self.max_tokens, self.temperature = model, base_url, max_tokens, temperature
        self.max_context, self.tokenizer, self.timeout = max_context, tokenizer, timeout
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)
        self.pool = ThreadPoolExecutor(workers)
        if server_extras is None:
            server_extras = urlparse(base_url).hostname != "api.openai.com"
        self.server_extras, self.top_k_off, self.template_kwargs = server_extras, 0, {}

    def fields(self, temperature, max_tokens):
        """The decoding fields of one request (see the class docstring)."""
        out = {"max_tokens": max_tokens, "temperature": temperature, "top_p": 1.0, "presence_penalty": 0.0,
               "frequency_penalty": 0.0}
        if self.server_extras:
            out["extra_body"] = {"top_k": self.top_k_off, "min_p": 0.0, "repetition_penalty": 1.0,
                                 "repeat_penalty": 1.0}
            if self.template_kwargs:  # vLLM renders the chat template with these (evaluate.py --chat-template-kwargs)
                out["extra_body"]["chat_template_kwargs"] = self.template_kwargs
        return out

    def count_tokens(self, messages):
        if self.tokenizer is not None:
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        root = self.base_url.rstrip("/")
        root = root[:-3] if root.endswith("/v1") else root
        req = urllib.request.Request(root + "/tokenize", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"model": self.model, "messages": messages,
                                                      "add_generation_prompt": True}).encode())
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                count = json.loads(r.read()).get("count")
            status = 200
        except urllib.error.HTTPError as e:
            count, status = None, e.code
        except (urllib.error.URLError, OSError) as e:
            raise PolicyError(f"cannot reach the model server at {root}/tokenize: {e}") from None
        if not isinstance(count, int):
            raise PolicyError(f"cannot count prompt tokens for the context rule (--max-context {self.max_context}): "
                              f"--model {self.model} is not a local model folder and {root}/tokenize answered "
                              f"HTTP {status}{'' if status != 200 else ' without a count'} (vLLM serves /tokenize). "
                              f"Pass the served model's local folder as --model, or --max-context 0 to leave the "
                              f"context limit to the server")
        return count

    def one(self, conversation, temperature):
        messages = to_messages(conversation)
        budget = self.max_tokens
        if self.max_context:
            budget = answer_budget(self.count_tokens(messages), self.max_tokens, self.max_context)
            if budget is None:
                return None  # the prompt alone no longer fits
        temperature = self.temperature if temperature is None else temperature
        for attempt in range(2):
            fields = self.fields(temperature, budget)
            try:
                out = self.client.chat.completions.create(model=self.model, messages=messages, **fields)
                return out.choices[0].message.content or ""
            except self.openai.APIConnectionError as e:  # includes timeouts
                raise PolicyError(f"cannot reach the model server at {self.base_url}: {e}") from None
            except self.openai.BadRequestError as e:
                msg = str(e).lower()
                if "top_k" in msg and fields.get("extra_body", {}).get("top_k") == 0 and attempt == 0:
                    self.top_k_off = -1  # older vLLMs disable top-k with -1 only
                    continue
                if "context" in msg or "too long" in msg or "maximum" in msg:
                    return None  # the prompt no longer fits the served model's context
                raise

    def __call__(self, conversations, envs, temperature=None):
        futures = [self.pool.submit(self.one, c, temperature) for c in conversations]
        outs = []
        for f in futures:
            try:
                outs.append(f.result())
            except PolicyError:
                raise
            except Exception as e:  # one bad response must not end the run: that episode ends, counted
                outs.append(e)
        return outs


def __getattr__(name):
    """agent.HFPolicy, agent.kv_reusable, ...: the HF policy lives in hf_policy.py (torch and transformers load only
    when it is asked for)."""
    if name in ("HFPolicy", "kv_reusable", "common_prefix", "kv_layers", "row_budget_criteria"):
        import hf_policy
        return getattr(hf_policy, name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
