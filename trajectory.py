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

Files are JSONL (one record per line) or, for AgentTraj-L as published, one JSON list. Below the record: its
tokenisation into steps, one writer per output with its settings kept, the compute dtype, and the batcher and
distributed set-up that train.py and perplexity.py share. At import this module needs only the standard library,
so that `select.py` starts fast: torch and tokenizers are imported inside the functions that need them.
"""
import json
import math
import os
import sys

ROLES = ("human", "gpt")


class RecordError(ValueError):
    """Bad input: the message names the file, the line or record number, and the problem."""


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


# ----------------------------------------------------------------------------- resumable JSONL output

def open_resumable(path, key="item_id"):
    """Open `path` for appending and return (done_keys, file). A run killed mid-write can leave a partial last
    line (no newline): it is cut off here (that item is simply done again), so a rerun never sees a broken or
    duplicated record. A broken line with more lines after it cannot come from a kill: that is an error, never a
    reason to cut off the good records behind it. Writers append one complete line per record with
    `append_record` and flush each time."""
    path = check_output(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    done = set()
    if os.path.exists(path):
        done, good = _scan_output(path, key)
        if good != os.path.getsize(path):
            with open(path, "rb+") as f:
                f.truncate(good)
    return done, open(path, "a", encoding="utf-8")


def done_keys(path, key="item_id"):
    """The keys (item_ids) already in output `path`, read only (a dry run, other ranks' part files): what
    open_resumable would return, without cutting off a partial last line. An empty set if there is no file."""
    return _scan_output(str(path), key)[0] if os.path.isfile(path) else set()


def _scan_output(path, key):
    """(keys of the complete records, bytes up to the end of the last complete line) of an output file."""
    done, good = set(), 0
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                break  # partial last line from a kill
            if raw.strip():
                try:
                    rec = json.loads(raw)
                except (ValueError, RecursionError):  # bad JSON, bytes that are not UTF-8, nesting
                    raise RecordError(f"{path}: line {n}: not a JSON record, and a kill can only cut the last "
                                      f"line; repair or remove it") from None
                if not isinstance(rec, dict) or not isinstance(rec.get(key), (str, int)):
                    raise RecordError(f"{path}: line {n}: a record without {key!r}")
                done.add(rec[key])
            good += len(raw)
    return done, good


def check_output(path, inputs=()):
    """`path` as a usable output file: not a directory, not one of the `inputs` (appending to the file being read
    would read its own output), its folder creatable. Raises RecordError naming the problem; returns str(path)."""
    path = str(path)
    if os.path.isdir(path):
        raise RecordError(f"{path}: is a directory; the output is a JSONL file")
    for other in inputs:
        if other is not None and (os.path.realpath(path) == os.path.realpath(str(other)) or
                                  (os.path.exists(path) and os.path.exists(other) and os.path.samefile(path, other))):
            raise RecordError(f"{path}: the output is also an input ({other}); write to another file")
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):  # the folder is made when the output is opened; its nearest existing
        folder = os.path.dirname(folder)  # ancestor must be a writable folder
    if not os.path.isdir(folder):
        raise RecordError(f"{path}: cannot be written ({folder} is a file, not a folder)")
    if not os.access(folder, os.W_OK):
        raise RecordError(f"{path}: cannot be written (the folder {folder} is read-only)")
    return path


def append_record(f, rec):
    """Append one record as one line in a single write, then flush, so a kill loses at most this line."""
    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    f.flush()


def write_jsonl(path, records):
    """Write records to `path` atomically (temp file + rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- tokenisation of steps
# Used by train.py (labels) and perplexity.py (per-step spans), so both see exactly the same tokens of a step.

IGNORE_INDEX = -100  # label of every token the loss never sees (PyTorch's cross_entropy default ignore_index)
CHAT_ROLES = {"human": "user", "gpt": "assistant"}


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


# ----------------------------------------------------------------------------- one writer per output, settings kept
# Every stage that appends to an output (select, perplexity, value_estimate, evaluate) and train.py's output folder
# hold a lock for the whole run, and keep the settings that made the output beside it. Standard library only.

class OutputBusy(RuntimeError):
    """Another live process writes the same output."""


class OutputLock:
    """The one-writer lock of an output, held until close() (or the process ends). close() removes the lock file,
    so a finished run leaves nothing behind; a killed run leaves the file, which does not block the next one."""

    def __init__(self, path, lock_path, f):
        self.path, self.lock_path, self.f = path, lock_path, f

    def close(self):
        if self.f is None:
            return
        try:  # unlink while still holding the lock: a waiting opener of the old file retries on the new inode
            if os.stat(self.lock_path).st_ino == os.fstat(self.f.fileno()).st_ino:
                os.unlink(self.lock_path)
        except OSError:
            pass
        self.f.close()
        self.f = None


def lock_output(path):
    """Take the one-writer lock of output `path` (a file or train.py's folder) for this process and return it
    (an OutputLock); keep it for as long as the run writes and close() it at the end.

    The lock is an flock on `<path>.lock` (a folder: `<path>/.lock`), which the kernel drops when its process dies,
    so a lock a killed run left behind never blocks the next one. The file holds the holder's pid and command line,
    so that the refusal can name the other process. Raises OutputBusy naming it."""
    import atexit
    import fcntl
    import sys
    lock_path = os.path.join(path, ".lock") if os.path.isdir(path) else f"{path}.lock"
    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    while True:
        f = open(lock_path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise OutputBusy(f"{path}: another run is writing this output ({holder}); wait for it to finish or stop "
                             f"it (a lock left by a killed run does not block)") from None
        try:  # the holder we waited on may have removed the file in between: lock the file that is there now
            if os.stat(lock_path).st_ino == os.fstat(f.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        f.close()
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}: {' '.join(sys.argv)[:300]}")
    f.flush()
    lock = OutputLock(path, lock_path, f)
    atexit.register(lock.close)
    return lock


SECRET_WORDS = ("key", "token", "secret", "password")


def public_config(config):
    """`config` (a dict of settings) without secrets: a setting whose name holds key/token/secret/password and
    whose value is a string is replaced by `<name>_set: true|false` (whether one was given), never its value."""
    out = {}
    for k, v in config.items():
        if isinstance(v, str) and any(w in k.lower() for w in SECRET_WORDS) and not k.lower().endswith("tokens"):
            out[f"{k}_set"] = bool(v) and v != "EMPTY"
        else:
            out[k] = v
    return out


def keep_config(path, config, compare, force=False, flag="--force", hint=None):
    """Write the settings `config` of a run to `path` (JSON, secrets removed), after checking them against the
    settings saved there by an earlier run into the same output: if any key named in `compare` differs, raise
    RecordError naming each difference, unless `force` (the caller's `flag` says so; `hint` replaces the advice at
    the end of the message). Returns the config written."""
    config = check_config(path, config, compare, force, flag, hint)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1, default=str)
    os.replace(tmp, path)
    return config


def check_config(path, config, compare, force=False, flag="--force", hint=None):
    """keep_config's check alone, writing nothing (a stage calls it before loading a model, and keep_config once
    the run is sure to start, so that a refused run leaves no config behind). Returns public_config(config)."""
    config = public_config(config)
    if os.path.exists(path) and not force:
        try:
            with open(path, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError) as e:
            raise RecordError(f"{path}: cannot read the settings of the earlier run ({e}); remove it or pass "
                              f"{flag}") from None
        if not isinstance(old, dict):
            raise RecordError(f"{path}: not a settings object; remove it or pass {flag}")
        diff = [f"{k}: {old.get(k)!r} before, {config.get(k)!r} now" for k in compare
                if k in old and old.get(k) != config.get(k)]
        if diff:
            hint = hint or f"write to another output, or pass {flag} to mix them"
            raise RecordError(f"{path}: the output holds a run with other settings ({'; '.join(diff)}); {hint}")
    return config


# ----------------------------------------------------------------------------- compute dtype (train, perplexity, hf)

def cpu_has_native_bf16():
    """True when this CPU multiplies bf16 natively (AVX512_BF16 or AMX-BF16 on x86, BF16 on Arm): only there is
    bf16 compute faster than fp32 on the CPU (an AVX2-only CPU emulates it and runs slower)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = set()
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags |= set(line.split(":", 1)[1].split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_dtype(name, device_type):
    """(torch dtype, reason) for `--dtype auto|bfloat16|float32` on `device_type` ("cuda" or "cpu"). auto: bf16 on
    a GPU that supports it, bf16 on a CPU with native bf16 matmul, float32 otherwise."""
    import torch
    if name == "bfloat16":
        return torch.bfloat16, "asked for"
    if name == "float32":
        return torch.float32, "asked for"
    if name != "auto":
        raise ValueError(f"--dtype {name!r}: expected auto, bfloat16 or float32")
    if device_type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "auto: the GPU supports bf16"
        return torch.float32, "auto: the GPU has no bf16"
    if cpu_has_native_bf16():
        return torch.bfloat16, "auto: the CPU has native bf16 matmul (avx512_bf16/amx_bf16)"
    return torch.float32, "auto: the CPU has no native bf16 matmul (no avx512_bf16/amx_bf16), fp32 is faster"


# ----------------------------------------------------------------------------- batching and ranks (train, perplexity)

def token_budget_batches(lengths, max_tokens, max_rows=None):
    """Indices into `lengths`, longest first, cut greedily into batches whose padded size (rows x longest row) is
    at most max_tokens and which hold at most max_rows rows; an item longer than the budget is a batch of its own.
    Longest first: neighbours have similar lengths (little padding), and an out-of-memory error shows on the first
    batch rather than hours in. The sort is stable: equal lengths keep their order."""
    batches, cur = [], []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        # cur[0] is the longest row of cur, so (len(cur) + 1) * lengths[cur[0]] is the padded size with row i
        if cur and (len(cur) == max_rows or (len(cur) + 1) * lengths[cur[0]] > max_tokens):
            batches.append(cur)
            cur = []
        cur.append(i)
    return batches + [cur] if cur else batches


def print0(*args, **kwargs):
    """print, flushed, on rank 0 only (RANK from torchrun's environment; a plain `python` run is rank 0)."""
    if int(os.environ.get("RANK", 0)) == 0:
        print(*args, **kwargs, flush=True)


def init_distributed(name, always=False, timeout=None):
    """torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) -> (rank, world_size, device); a plain `python` run is
    rank 0 of 1. The process group (NCCL on GPUs, gloo on CPUs) is made when there is more than one rank, or
    `always` (FSDP needs one even alone: then a world of one on an in-memory store). `timeout`: a
    datetime.timedelta for collectives, for ranks that may wait long for the slowest one.

    torchrun starts each worker in a session of its own, so `kill` of torchrun's process group misses them: they
    would go on working (and race a rerun's --resume, or save states after the kill). So a worker asks Linux to
    SIGKILL it the moment its launcher dies (prctl PR_SET_PDEATHSIG), and, where that is not available, watches
    its launcher and leaves with os._exit (a thread cannot end the process otherwise) within a second."""
    import torch
    import torch.distributed as dist
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if "TORCHELASTIC_RUN_ID" in os.environ:
        _leave_with_launcher(name, rank)
    backend, extra = "nccl" if use_cuda else "gloo", {} if timeout is None else {"timeout": timeout}
    if world > 1 or (always and "RANK" in os.environ):
        dist.init_process_group(backend, **extra)
    elif always:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, **extra)
    if dist.is_initialized():
        assert (dist.get_rank(), dist.get_world_size()) == (rank, world)
    return rank, world, device


def _leave_with_launcher(name, rank):
    """End this torchrun worker when its launcher dies (see init_distributed): Linux's PR_SET_PDEATHSIG, else a
    thread that polls the parent pid once a second."""
    import signal
    import threading
    import time
    launcher = os.getppid()
    try:  # torchrun's main thread starts the workers, so "parent death" is the launcher's exit
        import ctypes
        if ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL)) == 0:  # 1 = PR_SET_PDEATHSIG
            if os.getppid() != launcher:  # it died before the request took effect
                os._exit(1)
            return
    except (OSError, AttributeError):  # no prctl: not Linux
        pass

    def watch_launcher():
        while os.getppid() == launcher:
            time.sleep(1.0)
        print(f"{name} rank {rank}: the launcher (pid {launcher}) is gone; exiting", file=sys.stderr, flush=True)
        os._exit(1)
    threading.Thread(target=watch_launcher, daemon=True).start()
