"""agent.py's policies on tiny models: KV-cache reuse gives the very tokens of a full re-prefill (batched episodes of
uneven lengths, several rounds, episodes joining mid-run, a template that rewrites history), decoding ignores the
checkpoint's generation_config.json, one context rule for the hf and openai backends (the openai one against a stub
server on 127.0.0.1 whose received fields are checked), and make_policy's errors."""
import json
import os
import random
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

import agent
from agent import HFPolicy, OpenAIPolicy, make_policy, run_episode, run_episodes
from envs.serve import send_json
from tests.tiny import WORDS, save_tiny, tiny_tokenizer


@pytest.fixture(autouse=True)
def one_thread():
    # the CI machine is shared: two torch threads spinning against other processes are 10x slower than one
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class FakeEnv:
    """Observations of varying length (a few to ~60 words), never done: every episode runs max_rounds."""
    name = "fake"
    ack = "Ok."
    max_rounds = 4

    def instruction(self):
        return "Your task: " + " ".join(WORDS[:30])

    def reset(self, task_id):
        self.rng, self.t = random.Random(task_id), task_id
        return self.observation()

    def observation(self):
        return "Observation: " + " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(2, 60)))

    def step(self, text):
        return self.observation(), 0.0, False

    def close(self):
        pass


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    # initializer_range 0.5: peaked logits, so greedy never hinges on a near-tie (float noise of batch shapes)
    root = tmp_path_factory.mktemp("tiny")
    return {fam: save_tiny(root / fam, fam, initializer_range=0.5) for fam in ("qwen", "llama", "mistral")}


def play(policy, jobs=8, concurrency=3, max_rounds=4, env=FakeEnv, temperature=None):
    return {r["item_id"]: r for r in run_episodes(env, policy, [{"task_id": i} for i in range(jobs)],
                                                  concurrency=concurrency, max_rounds=max_rounds,
                                                  temperature=temperature)}


@pytest.mark.parametrize("family", ["qwen", "llama", "mistral"])
def test_kv_reuse_gives_the_tokens_of_full_reprefill(folders, family):
    kw = dict(max_new_tokens=10, max_context=4096, dtype="float32", verbose=False)
    kv, full = HFPolicy(folders[family], kv_cache=True, **kw), HFPolicy(folders[family], kv_cache=False, **kw)
    assert kv.kv_cache and not full.kv_cache
    a, b = play(kv), play(full)  # 8 episodes, 3 at a time: new ones join running ones, rows of uneven length
    assert a.keys() == b.keys() and len(a) == 8
    for k in a:
        assert a[k]["conversations"] == b[k]["conversations"], k
        assert a[k]["rounds"] == 4 and a[k]["end"] == "max_rounds"
    answers = [t["value"] for r in a.values() for t in r["conversations"][3::2]]
    assert len(set(answers)) > len(answers) // 2 and len({len(x) for x in answers}) > 3  # real, varied answers
    # states were reused every round after the first, no fallback, and freed when each episode ended
    assert kv.stats["kv_fallbacks"] == 0 and kv.caches == {}
    assert kv.stats["reused_tokens"] > kv.stats["prefill_tokens"]
    assert kv.stats["reused_tokens"] + kv.stats["prefill_tokens"] == full.stats["prefill_tokens"]


def test_kv_reuse_falls_back_when_the_template_rewrites_history(folders, tmp_path):
    folder = str(tmp_path / "counting")
    shutil.copytree(folders["qwen"], folder)
    tok = tiny_tokenizer("qwen")
    tok.chat_template = "{{- 'Turns so far: ' + (messages|length)|string + '\\n' }}" + tok.chat_template
    tok.save_pretrained(folder)  # the first line changes every round: no cached state is a prefix any more
    kw = dict(max_new_tokens=6, max_context=4096, dtype="float32", verbose=False)
    kv, full = HFPolicy(folder, kv_cache=True, **kw), HFPolicy(folder, kv_cache=False, **kw)
    a, b = play(kv, jobs=3, max_rounds=3), play(full, jobs=3, max_rounds=3)
    assert {k: r["conversations"] for k, r in a.items()} == {k: r["conversations"] for k, r in b.items()}
    assert kv.stats["kv_fallbacks"] == 3 * 2  # every round after the first of every episode
    assert kv.caches == {}


def test_checkpoint_generation_config_is_ignored(folders, tmp_path):
    plain = folders["qwen"]
    noisy = str(tmp_path / "noisy")
    shutil.copytree(plain, noisy)
    gc_path = os.path.join(noisy, "generation_config.json")
    cfg = json.load(open(gc_path))
    cfg.update(repetition_penalty=1.3, top_p=0.5, top_k=3, do_sample=True, temperature=0.7, no_repeat_ngram_size=2)
    json.dump(cfg, open(gc_path, "w"))
    kw = dict(max_new_tokens=12, max_context=4096, dtype="float32", verbose=False)
    convs = lambda res: {k: r["conversations"] for k, r in res.items()}
    assert convs(play(HFPolicy(plain, **kw), jobs=3)) == convs(play(HFPolicy(noisy, **kw), jobs=3))
    runs = []
    for folder in (plain, noisy):  # sampling: exactly temperature 1, nothing else, from the same seed
        torch.manual_seed(0)
        runs.append(convs(play(HFPolicy(folder, **kw), jobs=3, temperature=1.0)))
    assert runs[0] == runs[1]
    # the fixture matters: generate() left to the checkpoint's config gives other tokens
    from transformers import AutoModelForCausalLM
    pol = HFPolicy(noisy, **kw)
    ids = torch.tensor([agent.prompt_ids(pol.tok, [{"from": "human", "value": "go to the red door"}])])
    naive = AutoModelForCausalLM.from_pretrained(noisy, dtype=torch.float32).eval()
    torch.manual_seed(0)
    raw = naive.generate(ids, max_new_tokens=12)[0, ids.shape[1]:].tolist()
    pinned = pol._generate([ids[0].tolist()], ids.shape[1], [12], 0.0)[0]
    assert raw != pinned


def test_generate_never_compiles_the_preallocated_cache(folders):
    """generate() torch.compiles the decoding step when it is given a StaticCache on a GPU; the cache's length changes
    every round, so the policy's configs turn that off. Checked with transformers' own rule, told that this device
    compiles (on a GPU it would), once without the guard to show the check can fail."""
    from transformers import CompileConfig
    pol = HFPolicy(folders["qwen"], max_new_tokens=8, max_context=4096, dtype="float32", verbose=False)
    for temperature in (0.0, 1.0):
        cfg = pol._config(temperature, 4)
        cfg.compile_config = CompileConfig()
        cfg.compile_config._compile_all_devices = True
        past = {"past_key_values": pol._static_cache(16)}
        assert pol.model._valid_auto_compile_criteria(past, cfg) is False
        cfg.disable_compile = False
        assert pol.model._valid_auto_compile_criteria(past, cfg) is True


def test_hf_context_rule(folders):
    pol = HFPolicy(folders["qwen"], max_new_tokens=8, max_context=100000, dtype="float32", verbose=False)
    env = FakeEnv()
    for task in range(20):  # a first turn that the budget ends, not a stop token
        conv = agent.Episode(env, {"task_id": task})
        conv.reset()
        long = pol([conv.conv], [env])
        full_tokens = pol.last_tokens[0]
        if len(full_tokens) == 8 and pol.tok.eos_token_id not in full_tokens:
            break
    assert len(full_tokens) == 8 and pol.tok.eos_token_id not in full_tokens
    n = len(agent.prompt_ids(pol.tok, conv.conv))
    for context, want in ((n + 3, 3), (n + 1, 1), (n + 8, 8), (n + 100, 8)):
        pol.max_context = context  # the answer budget shrinks to what the prompt leaves
        out = pol([conv.conv], [env])
        assert pol.last_tokens[0] == full_tokens[:want] and out[0] is not None
    assert long[0] == out[0]
    pol.max_context = n  # the prompt alone no longer fits: the episode ends as "context", without a generation
    assert pol([conv.conv], [env]) == [None]
    r = run_episode(env, pol, task)
    assert r["end"] == "context" and r["rounds"] == 0
    # uneven rows in one batch: each answer is cut at its own budget
    envs = [FakeEnv() for _ in range(3)]
    eps = [agent.Episode(e, {"task_id": t}) for e, t in zip(envs, (0, 1, 5))]
    for ep in eps:
        ep.reset()
    pol.max_context = 100000
    pol([ep.conv for ep in eps], envs)
    free = pol.last_tokens
    ns = [len(agent.prompt_ids(pol.tok, ep.conv)) for ep in eps]
    assert len(set(ns)) == 3
    pol.max_context = max(ns) + 2
    pol([ep.conv for ep in eps], envs)
    assert pol.last_tokens == [f[:min(8, max(ns) + 2 - n)] for f, n in zip(free, ns)]
    assert len(pol.last_tokens[ns.index(max(ns))]) <= 2


# ----------------------------------------------------------------------------- the openai policy vs a stub


class Stub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tokenize=None, reject_top_k_zero=False):
        self.requests, self.tokenize, self.reject_top_k_zero = [], tokenize, reject_top_k_zero
        super().__init__(("127.0.0.1", 0), StubHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server_address[1]}/v1"


class StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.server.requests.append((self.path, body))
        if self.path == "/tokenize" and self.server.tokenize is not None:
            return send_json(self, 200, {"count": self.server.tokenize(body), "max_model_len": 4096, "tokens": []})
        if self.path == "/v1/chat/completions":
            if self.server.reject_top_k_zero and body.get("top_k") == 0:
                return send_json(self, 400, {"object": "error", "type": "BadRequestError", "code": 400,
                                             "message": "top_k must be -1 (disable), or at least 1, got 0."})
            return send_json(self, 200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                         "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                             "role": "assistant", "content": "Thought: ok\nAction: look"}}]})
        send_json(self, 404, {"error": "not found"})

    def log_message(self, *args):
        pass


def completions(stub):
    return [b for path, b in stub.requests if path == "/v1/chat/completions"]


def test_openai_pins_decoding_fields():
    stub = Stub()
    try:
        pol = OpenAIPolicy("m", stub.url, timeout=10)
        env = FakeEnv()
        assert pol([[{"from": "human", "value": "hi"}]], [env]) == ["Thought: ok\nAction: look"]
        pol([[{"from": "human", "value": "hi"}]], [env], temperature=1.0)
        greedy, sampled = completions(stub)
        for body, temp in ((greedy, 0.0), (sampled, 1.0)):
            assert body["temperature"] == temp and body["top_p"] == 1.0 and body["max_tokens"] == 512
            assert body["top_k"] == 0 and body["min_p"] == 0.0  # extra_body fields arrive at the top level
            assert body["repetition_penalty"] == 1.0 and body["repeat_penalty"] == 1.0
            assert body["presence_penalty"] == 0.0 and body["frequency_penalty"] == 0.0
    finally:
        stub.shutdown()
    # api.openai.com rejects unknown fields: only standard ones go there
    assert "extra_body" not in OpenAIPolicy("gpt-4o", "https://api.openai.com/v1").fields(0.0, 5)
    stub = Stub(reject_top_k_zero=True)  # an older vLLM: top_k -1 instead, remembered
    try:
        pol = OpenAIPolicy("m", stub.url, timeout=10)
        answers = pol([[{"from": "human", "value": "hi"}]] * 2, [FakeEnv(), FakeEnv()])
        assert answers == ["Thought: ok\nAction: look"] * 2
        assert [b["top_k"] for b in completions(stub)][-1] == -1 and pol.top_k_off == -1
    finally:
        stub.shutdown()


def test_openai_context_rule_with_local_tokenizer(folders):
    stub = Stub()
    try:
        pol = make_policy("openai", folders["qwen"], base_url=stub.url, max_new_tokens=8)
        assert pol.tokenizer is not None and pol.max_context == 4096
        env = FakeEnv()
        ep = agent.Episode(env, {"task_id": 2})
        ep.reset()
        n = len(agent.prompt_ids(pol.tokenizer, ep.conv))
        for context, want in ((4096, 8), (n + 3, 3), (n + 1, 1)):
            pol.max_context = context
            assert pol([ep.conv], [env]) == ["Thought: ok\nAction: look"]
            assert completions(stub)[-1]["max_tokens"] == want
        sent = len(completions(stub))
        pol.max_context = n
        assert pol([ep.conv], [env]) == [None] and len(completions(stub)) == sent  # no request: "context"
        assert run_episode(env, pol, 2)["end"] == "context"
        assert not [p for p, _ in stub.requests if p == "/tokenize"]
    finally:
        stub.shutdown()


def test_openai_context_rule_with_server_tokenize():
    stub = Stub(tokenize=lambda body: 100 * sum(m["role"] == "user" for m in body["messages"]))
    try:
        pol = OpenAIPolicy("served-name", stub.url, max_tokens=512, max_context=4096, timeout=10)
        conv = [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}, {"from": "human", "value": "c"}]
        for context, want in ((4096, 512), (300, 100), (201, 1)):
            pol.max_context = context
            assert pol([conv], [FakeEnv()]) == ["Thought: ok\nAction: look"]
            assert completions(stub)[-1]["max_tokens"] == want
        pol.max_context = 200
        assert pol([conv], [FakeEnv()]) == [None]
        path, body = stub.requests[-1]
        assert path == "/tokenize" and body["add_generation_prompt"] is True and body["model"] == "served-name"
        assert [m["content"] for m in body["messages"]] == ["a", "b", "c"]
    finally:
        stub.shutdown()
    stub = Stub(tokenize=None)  # neither a local folder nor /tokenize: a clear stop, not a silent guess
    try:
        pol = OpenAIPolicy("served-name", stub.url, max_context=4096, timeout=10)
        with pytest.raises(agent.PolicyError, match=r"cannot count prompt tokens.*/tokenize answered HTTP 404"
                                                    r".*--max-context 0"):
            pol([[{"from": "human", "value": "a"}]], [FakeEnv()])
        pol.max_context = 0  # no rule: the server decides
        assert pol([[{"from": "human", "value": "a"}]], [FakeEnv()]) == ["Thought: ok\nAction: look"]
        assert completions(stub)[-1]["max_tokens"] == 512
    finally:
        stub.shutdown()


# ----------------------------------------------------------------------------- make_policy


def test_make_policy_errors(folders, tmp_path, monkeypatch):
    assert isinstance(make_policy("expert"), agent.ExpertPolicy)
    with pytest.raises(ValueError, match="unknown policy 'gpt'"):
        make_policy("gpt")
    for kind in ("hf", "openai"):
        with pytest.raises(ValueError, match=f"--policy {kind} needs --model"):
            make_policy(kind)
    with pytest.raises(ValueError, match="no such model folder"):
        make_policy("hf", str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a transformers model folder"):
        make_policy("hf", str(tmp_path / "empty"))
    bare = tmp_path / "bare"
    shutil.copytree(folders["qwen"], bare)
    for f in ("chat_template.jinja",):
        (bare / f).unlink(missing_ok=True)
    cfg = json.load(open(bare / "tokenizer_config.json"))
    cfg.pop("chat_template", None)
    json.dump(cfg, open(bare / "tokenizer_config.json", "w"))
    import transformers

    def no_weights(*a, **k):
        raise AssertionError("weights loaded before the settings were checked")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_weights)
    for kind in ("hf", "openai"):  # a local folder for openai: its tokenizer counts the prompt, so it is checked
        with pytest.raises(ValueError, match="the tokenizer has no chat template"):
            make_policy(kind, str(bare))
    with pytest.raises(ValueError, match="--dtype 'fp16'"):
        make_policy("hf", folders["qwen"], dtype="fp16")
    with pytest.raises(ValueError, match="--max-new-tokens"):
        make_policy("hf", folders["qwen"], max_new_tokens=0)
    monkeypatch.undo()
    pol = make_policy("hf", folders["qwen"], max_new_tokens=4, max_context=512)
    assert isinstance(pol, HFPolicy) and pol.kv_cache and pol.max_context == 512
    assert pol.model.dtype == __import__("devices").resolve_dtype("auto", "cpu")[0]
    assert isinstance(make_policy("openai", "served-name", base_url="http://127.0.0.1:9/v1"), OpenAIPolicy)
