"""The record format shared by every ATLaS stage, and what two stages share around it.

A record is one AgentTraj-L trajectory (AgentGym's format):

    {"item_id": "babyai_12",
     "conversations": [{"from": "human", "loss": null,  "value": "<instruction>"},
                       {"from": "gpt",   "loss": false, "value": "Ok."},
                       {"from": "human", "loss": null,  "value": "<first observation>"},
                       {"from": "gpt",   "loss": true,  "value": "Thought: ...\\nAction: ..."},
                       ...]}

A *step* is a `gpt` turn whose `loss` is true in the source. Steps are named everywhere by their index in
`conversations`. Every selector (select.py, perplexity.py, value_estimate.py) writes the same record back with:

    "steps":          [3, 5, 7, ...]     # all step indices of the source record (never changes)
    "critical_steps": [5, 9]             # the selected ones, a subset of "steps", sorted
    "loss" flags                         # true only on the critical steps: train.py puts loss exactly there (AgentGym's
                                         # bc_trainer ignores `loss` and trains every gpt turn)
    "selection":      {"method": ..., "ratio": ..., ...}   # who selected them and why

Files are JSONL (one record per line) or, for AgentTraj-L as published, one JSON list. Below the record: reading
and validating it, and its tokenisation into steps. How a stage writes its output is runs.py; where the compute
runs is devices.py. At import this module needs only the standard library, so that `select.py` starts fast:
torch and tokenizers are imported inside the functions that need them.

Which env and task a record is: `split_item_id` (the one item-id rule, AgentGym's prefixes included) and
`env_task` (the same, with a record's own "task_id" field first).
"""
import json
import math
import os
import re

ROLES = ("human", "gpt")


class RecordError(ValueError):
    """Bad input: the message names the file, the line or record number, and the problem."""


# ----------------------------------------------------------------------------- item ids: which env, which task

# AgentGym names a record "<env>_<task id>" ("webshop_5238", "babyai_4"), but for the envs that share a server
# package it puts the package in front: LMRL-Gym's maze and wordle are "lmrlgym_maze_12", "lmrlgym_wordle_3", and
# AgentBoard's tool envs (weather, movie, todo, academia, sheet) "tool_weather_5". The prefixes are the names of
# AgentTraj-L's and AgentEval's files (lmrlgym_maze_train.json, tool_weather_test.json; the file lists in
# WooooDyy/AgentGym agentenv/examples/agentevol/train_agentevol_multi_task.sh and on the Hugging Face data cards).
AGENTGYM_PREFIXES = ("lmrlgym_", "tool_")
ITEM_ID = re.compile(r"([a-z][a-z0-9]*(?:_[a-z][a-z0-9]*)*)_([0-9]+)")  # env: lowercase words, then the task number


def split_item_id(item_id):
    """(env, task id) of an item id: "maze_3" -> ("maze", 3), "lmrlgym_maze_12" -> ("maze", 12),
    "tool_weather_5" -> ("weather", 5). The one rule every stage uses; whether the env is registered is the
    caller's question. ValueError (one line) for an id that is not "[prefix]<env>_<task id>"."""
    m = ITEM_ID.fullmatch(item_id) if isinstance(item_id, str) else None
    if m is None:
        raise ValueError(f"item_id {item_id!r} is not <env>_<task id> (e.g. babyai_12, lmrlgym_maze_3, "
                         f"tool_weather_5)")
    env = m.group(1)
    for prefix in AGENTGYM_PREFIXES:
        if env.startswith(prefix) and len(env) > len(prefix):
            env = env[len(prefix):]
            break
    return env, int(m.group(2))


def env_task(rec):
    """(env, task id) of a record: the env from its item_id (split_item_id), the task id from its own "task_id"
    field when it has one (a non-negative integer, or its digits), else from the item_id. ValueError otherwise."""
    env, task = split_item_id(rec.get("item_id"))
    if "task_id" in rec:
        t = rec["task_id"]
        if isinstance(t, str) and re.fullmatch(r"[0-9]+", t):
            t = int(t)
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise ValueError(f"item_id {rec['item_id']!r}: field 'task_id' must be a non-negative integer, got "
                             f"{json.dumps(t)[:40]}")
        task = t
    return env, task


# ----------------------------------------------------------------------------- reading and validation

def _step_list(rec, key, where):
    """rec[key] checked to be a sorted list of distinct integer indices (a bool is not an index: in Python `true` is
    the integer 1, and "steps": [true, 3] would make the "Ok." acknowledgement a step)."""
    value = rec[key]
    if (not isinstance(value, list) or any(type(s) is not int for s in value)
            or sorted(set(value)) != value):
        raise RecordError(f"{where}: field '{key}' must be a sorted list of distinct integer turn indices, "
                          f"got {json.dumps(value)[:80]}")
    return value


def _unencodable(rec):
    """The path (e.g. "conversations[3].value") of the first string in `rec` that cannot be written as UTF-8 (a lone
    surrogate such as "\\ud800", which JSON escapes can carry), or None. Walks without recursion."""
    try:
        json.dumps(rec, ensure_ascii=False).encode("utf-8")
        return None
    except UnicodeEncodeError:
        pass
    stack = [("", rec)]
    while stack:
        path, x = stack.pop()
        if isinstance(x, str) and not _encodes(x):
            return path or "value"
        if isinstance(x, dict):
            for k, v in x.items():
                name = f"{path}.{k}" if path else str(k)
                if not _encodes(k):
                    return f"{path}.<key>" if path else "<key>"
                stack.append((name, v))
        elif isinstance(x, list):
            stack += [(f"{path}[{i}]", v) for i, v in enumerate(x)]
    return "a field"


def _encodes(s):
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def validate_record(rec, where="record"):
    """Raise RecordError naming `where` if `rec` is not a valid trajectory record; return it unchanged.

    The record rule every stage relies on: roles alternate human, gpt, ...; a step is a gpt turn; `steps` (written
    by a selector) are integer indices of gpt turns; without `critical_steps` the loss flags mark exactly the steps,
    and in a selected record (one with `critical_steps`, a subset of `steps`) the loss flags mark exactly the
    critical steps, so that a trainer (which reads the flags) and analyze.py (which reads `critical_steps`) see
    the same selection. Every string must be encodable as UTF-8 (no lone surrogates)."""
    if not isinstance(rec, dict):
        raise RecordError(f"{where}: a record must be a JSON object, got {type(rec).__name__}")
    item_id = rec.get("item_id")
    if item_id is None:
        raise RecordError(f"{where}: missing field 'item_id'")
    if not isinstance(item_id, (str, int)) or isinstance(item_id, bool):
        raise RecordError(f"{where}: 'item_id' must be a string, got {json.dumps(item_id)[:80]}")
    try:
        bad = _unencodable(rec)
    except RecursionError:
        raise RecordError(f"{where}: nested too deeply") from None
    if bad:
        raise RecordError(f"{where}: field '{bad}' holds text that cannot be encoded as UTF-8 (a lone surrogate "
                          f"such as \\ud800)")
    where = f"{where} (item_id {item_id!r})"
    _check_turns(rec.get("conversations"), where)
    _check_steps(rec, where)
    if "selection" in rec and not isinstance(rec["selection"], dict):
        raise RecordError(f"{where}: field 'selection' must be an object")
    return rec


def _check_turns(conv, where):
    """Roles alternate human, gpt, ...; every value is text; loss is null/false/true, never true on a human turn."""
    if conv is None:
        raise RecordError(f"{where}: missing field 'conversations'")
    if not isinstance(conv, list) or not conv:
        raise RecordError(f"{where}: 'conversations' must be a non-empty list")
    for i, turn in enumerate(conv):
        if not isinstance(turn, dict):
            raise RecordError(f"{where}: conversations[{i}] must be an object")
        for key in ("from", "value"):
            if key not in turn:
                raise RecordError(f"{where}: conversations[{i}] has no '{key}'")
        role = turn["from"]
        if role not in ROLES:
            raise RecordError(f"{where}: conversations[{i}] has role {json.dumps(role)[:40]}, expected 'human' or "
                              f"'gpt'")
        expected = ROLES[i % 2]
        if role != expected:
            raise RecordError(f"{where}: conversations[{i}] is {role!r} but roles must alternate "
                              f"human, gpt, human, ... (expected {expected!r})")
        if not isinstance(turn["value"], str) or not turn["value"].strip():
            raise RecordError(f"{where}: conversations[{i}] has an empty or non-string 'value'")
        loss = turn.get("loss")
        if loss is not None and not isinstance(loss, bool):
            raise RecordError(f"{where}: conversations[{i}] has loss {json.dumps(loss)[:40]}, expected null, false "
                              f"or true")
        if role == "human" and loss:
            raise RecordError(f"{where}: conversations[{i}] is a human turn with loss true")


def _check_steps(rec, where):
    """`steps` name gpt turns and agree with the loss flags; in a selected record the flags are `critical_steps`."""
    conv, flagged = rec["conversations"], loss_turns(rec)
    if "steps" in rec:
        steps = _step_list(rec, "steps", where)
        bad = [s for s in steps if not (0 <= s < len(conv) and conv[s]["from"] == "gpt")]
        if bad:
            raise RecordError(f"{where}: field 'steps' names {bad}, which are not gpt turns of the conversation")
    else:
        steps = flagged
    if not steps:
        raise RecordError(f"{where}: no steps (no gpt turn has loss true)")
    if "critical_steps" in rec:
        if "steps" not in rec:
            raise RecordError(f"{where}: a selected record (with 'critical_steps') needs 'steps', the steps of "
                              f"its source")
        crit = _step_list(rec, "critical_steps", where)
        if not set(crit) <= set(steps):
            raise RecordError(f"{where}: field 'critical_steps' names {sorted(set(crit) - set(steps))}, which are "
                              f"not in 'steps' {steps}")
        if flagged != crit:
            raise RecordError(f"{where}: the loss flags mark turns {flagged} but field 'critical_steps' is {crit}: "
                              f"a trainer would train other turns than the selection names")
    elif flagged != steps:
        raise RecordError(f"{where}: the loss flags mark turns {flagged} but field 'steps' is {steps}")


def _decode(raw, path, lineno, kind="line"):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(f"{path}: {kind} {lineno}: not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}); "
                          f"save the file as UTF-8") from None


def _open_input(path):
    """The input file opened for binary reading, with the problems that make it unreadable as a whole named."""
    path = str(path)
    if not os.path.exists(path):
        raise RecordError(f"{path}: no such file")
    if os.path.isdir(path):
        raise RecordError(f"{path}: is a directory, expected a JSONL file or a JSON list")
    try:
        f = open(path, "rb")
    except OSError as e:
        raise RecordError(f"{path}: cannot read ({e.strerror})") from None
    head = f.read(4)
    f.seek(0)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in head:
        f.close()
        raise RecordError(f"{path}: line 1: the file is UTF-16 (or holds NUL bytes); save it as UTF-8")
    if head[:3] == b"\xef\xbb\xbf":
        f.seek(3)  # a UTF-8 byte-order mark, as some Windows editors write: harmless
    return f


def _loads(text, path, lineno, kind="line"):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if kind == "line":  # one JSONL line: an error past its end (e.lineno 2) is at the end of the line
            line, col = lineno, (f"column {e.colno}" if e.lineno == 1 else "the end of the line")
        else:
            line, col = e.lineno, f"column {e.colno}"
        raise RecordError(f"{path}: line {line}: not valid JSON at {col} ({e.msg})") from None
    except RecursionError:
        raise RecordError(f"{path}: line {lineno if kind == 'line' else _deep_line(text)}: JSON nested too deeply "
                          f"to be a record") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise RecordError(f"{path}: line {lineno}: not a usable JSON value ({e})") from None


def _deep_line(text, limit=500):
    """The line where `text`'s JSON nesting first passes `limit` levels (to name it when json gives up)."""
    depth, in_str, esc, line = 0, False, False, 1
    for ch in text:
        if ch == "\n":
            line += 1
        if in_str:
            esc, in_str = (False, True) if esc else (ch == "\\", ch != '"')
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return line
        elif ch in "]}":
            depth -= 1
    return line


def iter_records(path, validate=True):
    """Yield (lineno, record) from a JSONL file or a JSON list (AgentTraj-L as published); lineno is the
    1-based line of a JSONL file or the 1-based position in a JSON list. Duplicate item_ids are an error.
    Every problem (unreadable file, bytes that are not UTF-8, bad JSON, a record that breaks the rule) is a
    RecordError naming the file and the line or record."""
    path = str(path)
    with _open_input(path) as f:
        start = f.tell()
        head = f.read(4096).lstrip()
        f.seek(start)
        seen = {}
        if head.startswith(b"["):
            numbered = enumerate(_json_list(f, path), 1)
            kind = "record"
        else:
            numbered = _jsonl_lines(f, path)
            kind = "line"
        for n, rec in numbered:
            where = f"{path}: {kind} {n}"
            if validate:
                validate_record(rec, where)
            item_id = rec.get("item_id") if isinstance(rec, dict) else None
            if isinstance(item_id, (str, int)) and item_id in seen:
                raise RecordError(f"{where}: duplicate item_id {item_id!r} (first at {kind} {seen[item_id]})")
            seen[item_id] = n
            yield n, rec


def _json_list(f, path):
    raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise RecordError(f"{path}: line {line}: not UTF-8 (byte {raw[e.start]:#04x}); save the file as UTF-8") \
            from None
    items = _loads(text, path, 1, kind="file")
    if not isinstance(items, list):
        raise RecordError(f"{path}: line 1: expected a JSON list of records or one record per line")
    return items


def _jsonl_lines(f, path):
    for n, raw in enumerate(f, 1):
        if not raw.strip():
            continue
        yield n, _loads(_decode(raw, path, n), path, n)


def read_records(path, validate=True):
    """All records of a file, validated; raises RecordError on the first bad one, or if the file has none."""
    records = [rec for _, rec in iter_records(path, validate)]
    if not records:
        raise RecordError(f"{path}: the file holds no records")
    return records


def step_indices(rec):
    """Indices in `conversations` of the record's steps: `rec["steps"]` once a selector has written it,
    otherwise the gpt turns with loss true (the "Ok." preamble has loss false and is not a step)."""
    if "steps" in rec:
        return list(rec["steps"])
    return [i for i, t in enumerate(rec["conversations"]) if t.get("from") == "gpt" and t.get("loss") is True]


def loss_turns(rec):
    """Indices of the turns a trainer computes loss on: gpt turns whose loss flag is true *now*."""
    return [i for i, t in enumerate(rec["conversations"]) if t.get("from") == "gpt" and t.get("loss") is True]


# ----------------------------------------------------------------------------- selection

def budget(num_steps, ratio):
    """How many steps a selector may pick from a trajectory of `num_steps` steps at ratio m:
    k = max(1, floor(m * T)), never more than T. The paper asks for "at most m% x length(tau)" steps;
    the floor keeps us at or under that bound, and the minimum of one keeps short trajectories trainable.
    (The 1e-9 guards against 0.3 * 10 = 2.9999999999999996 style float error.)"""
    if num_steps <= 0:
        return 0
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    return min(num_steps, max(1, math.floor(ratio * num_steps + 1e-9)))


def with_selection(rec, critical, selection):
    """The output record of every selector: a copy of `rec` with loss true only on `critical`, the original
    steps kept in "steps", and "critical_steps" + "selection" added. `critical` must be a subset of the steps."""
    steps = step_indices(rec)
    critical = sorted(set(critical))
    if not set(critical) <= set(steps):
        raise ValueError(f"item {rec.get('item_id')!r}: {sorted(set(critical) - set(steps))} are not steps")
    chosen = set(critical)
    out = {k: v for k, v in rec.items() if k not in ("conversations", "steps", "critical_steps", "selection")}
    out["conversations"] = [
        {**t, "loss": (i in chosen) if t["from"] == "gpt" else t.get("loss")}
        for i, t in enumerate(rec["conversations"])
    ]
    out["steps"] = steps
    out["critical_steps"] = critical
    out["selection"] = dict(selection)
    return out


# ----------------------------------------------------------------------------- tokenisation of steps
# Used by train.py (labels) and perplexity.py (per-step spans), so both see exactly the same tokens of a step.

IGNORE_INDEX = -100  # label of every token the loss never sees (PyTorch's cross_entropy default ignore_index)
CHAT_ROLES = {"human": "user", "gpt": "assistant"}


def template_kwargs(text):
    """--chat-template-kwargs (a JSON object, e.g. '{"enable_thinking": false}' for Qwen3) -> a dict; None -> {}.
    ValueError in one line otherwise."""
    if text is None:
        return {}
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--chat-template-kwargs {text!r}: not JSON ({e.msg})") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"--chat-template-kwargs {text!r}: must be a JSON object of template variables")
    return kwargs


def use_template_kwargs(tokenizer, kwargs):
    """Every render of `tokenizer`'s chat template from now on gets the template variables `kwargs` (reasoning
    models render differently with enable_thinking). train.py, perplexity.py, evaluate.py and value_estimate.py
    call it on the tokenizer they render with, from the same --chat-template-kwargs, so that a model is trained,
    scored and evaluated on one rendering. Returns the tokenizer."""
    if kwargs:
        import functools
        tokenizer.apply_chat_template = functools.partial(tokenizer.apply_chat_template, **kwargs)
    return tokenizer


def chat_messages(rec):
    """The record's conversation as chat-template messages: human -> user, gpt -> assistant."""
    return [{"role": CHAT_ROLES[t["from"]], "content": t["value"]} for t in rec["conversations"]]


def _render(rec, tokenizer):
    """The record rendered by the tokenizer's own chat template: (text, token ids, each token's (start, end)
    character offsets, the ids of the special tokens)."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(f"the tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat_template: ATLaS "
                         f"renders trajectories with the model's own template (use an instruct/chat model folder)")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("tokenize_record needs a fast tokenizer (character offsets); got a slow one")
    text = tokenizer.apply_chat_template(chat_messages(rec), tokenize=False)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    special = set(tokenizer.all_special_ids)
    special |= {i for i, t in tokenizer.added_tokens_decoder.items() if getattr(t, "special", False)}
    return text, list(enc["input_ids"]), enc["offset_mapping"], special


def _gpt_token_spans(rec, text, ids, offsets, special):
    """{conversation index: (first, end)} token range of every gpt turn's loss tokens (see tokenize_record): each
    turn's content is found in the rendered text, in order, and mapped to tokens by their character offsets."""
    import bisect
    starts, ends = [s for s, _ in offsets], [e for _, e in offsets]
    token_spans, pos = {}, 0
    for i, turn in enumerate(rec["conversations"]):
        value = turn["value"]
        content = value.strip()
        c0 = text.find(content, pos)
        if c0 < 0:
            raise RecordError(f"item_id {rec.get('item_id')!r}: the chat template changed the content of "
                              f"conversations[{i}]; cannot locate it in the rendered text")
        c1 = c0 + len(content)
        # Llama/Mistral templates trim the content, Qwen's copies it as is: take the surrounding whitespace
        # too when the template kept it
        lead, trail = value[:len(value) - len(value.lstrip())], value[len(value.rstrip()):]
        if text[c0 - len(lead):c0] == lead and text[c1:c1 + len(trail)] == trail:
            c0, c1 = c0 - len(lead), c1 + len(trail)
        pos = c1
        if turn["from"] != "gpt":
            continue
        first = bisect.bisect_right(ends, c0)      # first token ending after the content starts
        last = bisect.bisect_left(starts, c1)      # one past the last token starting inside the content
        k = last  # then through the first special token (end of turn) if only whitespace lies between
        while k < len(ids) and ids[k] not in special and not text[starts[k]:ends[k]].strip():
            k += 1
        token_spans[i] = (first, k + 1 if k < len(ids) and ids[k] in special else last)
    return token_spans


def tokenize_record(rec, tokenizer, max_length=None):
    """Tokenise a record with the tokenizer's own chat template and find every gpt turn's loss tokens.

    Returns a dict:
      input_ids     list[int], the rendered conversation (at most max_length tokens)
      labels        list[int], IGNORE_INDEX except on the loss tokens of the turns in loss_turns(rec)
      spans         {conversation index: (start, end)}: token range [start, end) of every step in
                    step_indices(rec) that survived truncation (perplexity.py scores exactly these)
      n_keep        1 + position of the last loss token (0 if none): tokens after it cannot change the loss
                    or the gradients of a causal model, so train.py drops them (see trim_after_last_loss)
      n_loss_tokens number of labels != IGNORE_INDEX
      n_cut_steps   steps of step_indices(rec) lost to truncation; n_cut_loss_turns: the same for loss_turns
      n_tokens      length of the rendered conversation before truncation

    A turn's loss tokens are its content tokens plus the template's end-of-turn token (<|eot_id|>, <|im_end|>,
    </s>): the model must learn to stop. The role header before the content is not included. This works for any
    template that copies each message's content (possibly trimmed) into the text and closes an assistant turn
    with a special token: we find each content in the rendered text, in order, and map characters to tokens
    with the fast tokenizer's offsets. The first loss token is the first token overlapping the content (with
    byte-level BPE it may also hold the space the template puts before it, as in Mistral's "[/INST] Thought");
    the span then runs through the first special token after the content if only whitespace lies between.

    Truncation rule: a sequence longer than max_length keeps its first max_length tokens; a turn whose span
    does not fit entirely is dropped (no label, no span) and counted, never trained or scored half-cut.
    """
    text, ids, offsets, special = _render(rec, tokenizer)
    token_spans = _gpt_token_spans(rec, text, ids, offsets, special)
    n_tokens = len(ids)
    if max_length is not None and n_tokens > max_length:
        ids = ids[:max_length]
    fits = {i: se for i, se in token_spans.items() if se[1] <= len(ids)}
    steps, loss = step_indices(rec), loss_turns(rec)
    labels = [IGNORE_INDEX] * len(ids)
    for i in loss:
        if i in fits:
            s, e = fits[i]
            labels[s:e] = ids[s:e]
    n_keep = max((fits[i][1] for i in loss if i in fits), default=0)
    return {"input_ids": ids, "labels": labels, "spans": {i: fits[i] for i in steps if i in fits},
            "n_keep": n_keep, "n_loss_tokens": sum(l != IGNORE_INDEX for l in labels),
            "n_cut_steps": sum(i not in fits for i in steps), "n_cut_loss_turns": sum(i not in fits for i in loss),
            "n_tokens": n_tokens}


def trim_after_last_loss(tokenized):
    """(input_ids, labels) without the tokens after the last loss token. In a causal model a token only
    influences the predictions of later tokens, so the dropped tail changes neither the loss nor the gradients."""
    n = tokenized["n_keep"]
    return tokenized["input_ids"][:n], tokenized["labels"][:n]
