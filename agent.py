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
an episode whose prompt no longer fits the policy's context (the episode then ends with end="context"):
    ExpertPolicy()                                   env.expert_turn() (built-in envs only)
    OpenAIPolicy(model, base_url, api_key, ...)      any OpenAI-compatible chat endpoint (vLLM, ...), greedy
    HFPolicy(model_path, ...)                        local transformers model, one left-padded batch per round
A policy error on one episode (a bad response, a server error after retries) ends that episode with
end="policy_error" and is counted; an unreachable server raises PolicyError at once (no hang: timeouts).
"""
import time
from concurrent.futures import ThreadPoolExecutor

from envs import ACK, success as is_success
from trajectory import CHAT_ROLES


class PolicyError(RuntimeError):
    """The policy cannot work at all (e.g. the model server is unreachable): stop the run with this message."""


def turn(role, value, loss):
    return {"from": role, "loss": loss, "value": value}


# ----------------------------------------------------------------------------- policies

class ExpertPolicy:
    name = "expert"

    def __call__(self, conversations, envs, temperature=None):
        return [env.expert_turn() for env in envs]


def to_messages(conversation):
    return [{"role": CHAT_ROLES[t["from"]], "content": t["value"]} for t in conversation]


class OpenAIPolicy:
    """Chat completions from any OpenAI-compatible server. Greedy (temperature 0) unless told otherwise."""
    name = "openai"

    def __init__(self, model, base_url, api_key="EMPTY", max_tokens=512, temperature=0.0, timeout=120.0,
                 max_retries=2, workers=64):
        import openai
        self.openai = openai
        self.model, self.base_url, self.max_tokens, self.temperature = model, base_url, max_tokens, temperature
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries)
        self.pool = ThreadPoolExecutor(workers)

    def one(self, conversation, temperature):
        try:
            out = self.client.chat.completions.create(
                model=self.model, messages=to_messages(conversation), max_tokens=self.max_tokens,
                temperature=self.temperature if temperature is None else temperature)
        except self.openai.APIConnectionError as e:  # includes timeouts
            raise PolicyError(f"cannot reach the model server at {self.base_url}: {e}") from None
        except self.openai.BadRequestError as e:
            if "context" in str(e).lower() or "too long" in str(e).lower() or "maximum" in str(e).lower():
                return None  # the prompt no longer fits the served model's context
            raise
        return out.choices[0].message.content or ""

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


class HFPolicy:
    """A local transformers causal LM with its chat template; all running episodes are generated in one batch.
    Prompts longer than max_context tokens (AgentGym: 4096) end their episode with end="context"."""
    name = "hf"

    def __init__(self, model_path, max_new_tokens=512, max_context=4096, temperature=0.0, device=None,
                 dtype="auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(model_path)
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.tok.padding_side = "left"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype).to(self.device).eval()
        self.max_new_tokens, self.max_context, self.temperature = max_new_tokens, max_context, temperature

    def __call__(self, conversations, envs, temperature=None):
        temperature = self.temperature if temperature is None else temperature
        prompts = [self.tok.apply_chat_template(to_messages(c), add_generation_prompt=True, tokenize=False)
                   for c in conversations]
        ids = [self.tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        outs = [None] * len(ids)
        live = [i for i, x in enumerate(ids) if len(x) < self.max_context]
        if not live:
            return outs
        width = max(len(ids[i]) for i in live)
        pad = self.tok.pad_token_id
        input_ids = self.torch.tensor([[pad] * (width - len(ids[i])) + ids[i] for i in live], device=self.device)
        mask = self.torch.tensor([[0] * (width - len(ids[i])) + [1] * len(ids[i]) for i in live], device=self.device)
        budget = max(1, min(self.max_new_tokens, self.max_context - width))
        kwargs = dict(do_sample=True, temperature=temperature) if temperature and temperature > 0 else \
            dict(do_sample=False)
        with self.torch.no_grad():
            gen = self.model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=budget,
                                      pad_token_id=pad, **kwargs)
        for row, i in enumerate(live):
            outs[i] = self.tok.decode(gen[row, width:], skip_special_tokens=True).strip()
        return outs


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
    free = [make_env() for _ in range(max(1, min(concurrency, len(jobs))))]
    pending = list(reversed(jobs))
    running = []
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
                for ep in [ep for ep in running if ep.done]:
                    running.remove(ep)
                    free.append(ep.env)
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
                    yield ep.result()
                if progress is not None:
                    progress.set_postfix(running=len(running), refresh=False)
        finally:
            for env in free + [ep.env for ep in running]:
                try:
                    env.close()
                except Exception:
                    pass


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
    return ep.result()
