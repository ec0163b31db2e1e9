"""The oracle's answer (paper Appendix D.1): the four categories, the structured-output schema for servers that
constrain decoding, and the two parsers (the paper's free text; JSON) from an answer to (kept step indices,
reasons, plan, dropped counts). An answer that names no usable step raises ParseError (oracle.py): the oracle is
asked again. Named indices that are not steps, repeats and those past the budget are dropped and counted."""
import json
import re

from oracle import ParseError

CATEGORIES = ["Plan Creation", "Critical Observation", "Critical Action", "Self Correction"]
# The prompt names the categories twice: by the definitions' names and by "key observation, planning, recall,
# pivotal action". Answers use either; both map to the four names. The earliest phrase in a step's text wins.
CATEGORY_PHRASES = [
    (r"plan(?:ning)?[\s-]+creation|plan[\s-]+formulation|planning", "Plan Creation"),
    (r"(?:critical|key)[\s-]+observations?", "Critical Observation"),
    (r"(?:critical|pivotal|key|decisive)[\s-]+actions?", "Critical Action"),
    (r"self[\s-]*correct(?:ion|ing)|recall(?:s|ing)?|reflection", "Self Correction"),
]


def response_format_for(steps, kind, budget):
    """The structured-output request: {plan, critical_steps: [{index, category, reason}]} with `index` limited to
    this trajectory's steps and 1..budget items, so a constrained decoder (vLLM, llama.cpp) can only name steps
    within the budget. "json" is OpenAI's json_schema form (its strict mode takes minItems/maxItems but not
    maxLength); "json_object" is the {type, schema} form of python -m llama_cpp.server, where the strings are also
    bounded: small models otherwise copy observations into `reason` until --max-tokens cuts the JSON."""
    text = {"type": "string"}
    bounded = {"plan": {"type": "string", "maxLength": 600}, "reason": {"type": "string", "maxLength": 300}}
    step = {"type": "object", "additionalProperties": False, "required": ["index", "category", "reason"],
            "properties": {"index": {"type": "integer", "enum": list(steps)},
                           "category": {"type": "string", "enum": CATEGORIES},
                           "reason": bounded["reason"] if kind == "json_object" else text}}
    schema = {"type": "object", "additionalProperties": False, "required": ["plan", "critical_steps"],
              "properties": {"plan": bounded["plan"] if kind == "json_object" else text,
                             "critical_steps": {"type": "array", "items": step, "minItems": 1, "maxItems": budget}}}
    if kind == "json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": "critical_steps", "strict": True, "schema": schema}}


def category_of(text):
    """The canonical category of the earliest category phrase in `text`, or None."""
    best = None
    for pattern, name in CATEGORY_PHRASES:
        m = re.search(pattern, text, re.I)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), name)
    return best and best[1]


def indices_in(bracket, steps):
    """Indices named inside one `conversation[...]`: "3", "3, 7", "3 and 7"; a range "3-9" (also "3..9", "3 to 9",
    "3–9") stands for the steps from 3 to 9 -- the human turns inside a range were never named, so they are not
    counted as dropped."""
    out = []
    for m in re.finditer(r"(\d+)\s*(?:-|–|—|\.\.|to)\s*(\d+)|(\d+)", bracket):
        if m.group(3):
            out.append(int(m.group(3)))
        else:
            a, b = sorted((int(m.group(1)), int(m.group(2))))
            out += [s for s in steps if a <= s <= b]
    return out


def take(named, steps, budget):
    """Keep the named indices in the order given: non-steps, repeats and those past the budget are dropped and
    counted (the oracle lists its most important steps first, so the budget keeps the first ones)."""
    stepset, kept = set(steps), []
    dropped = {"not_a_step": 0, "duplicate": 0, "over_budget": 0}
    for i in named:
        if i not in stepset:
            dropped["not_a_step"] += 1
        elif i in kept:
            dropped["duplicate"] += 1
        elif len(kept) >= budget:
            dropped["over_budget"] += 1
        else:
            kept.append(i)
    if not kept:
        raise ParseError(f"the answer names no step of this trajectory (named {named[:20]})")
    return kept, dropped


def parse_text_answer(answer, steps, budget):
    """The paper's free-text format -> (kept indices, reasons [{index, category, reason}], plan, dropped).

    The list is read from the "critical steps are:" header to the "Reason" header (or to a blank line after the
    list); every `conversation[...]` there counts. Markdown bold/headers are ignored. Each kept step's reason is
    the text that follows its mentions up to the next mention of another kept step (mentions of other turns
    inside a reason do not split it); its category is the first category phrase there, looking in the Reason
    part first and then in the list (for answers like "conversation[3] (planning), ...")."""
    text = re.sub(r"[*`]|^#+\s*", "", answer, flags=re.M)
    mention = r"(?i)conversations?\s*\[([^\]]*)\]"
    reason_hdr = re.compile(r"^[\s\d.)>-]*(?:the\s+)?(?:reasons?|justification|explanation)\b", re.I | re.M)
    for hdr in re.finditer(r"critical\s+(?:action\s+)?steps?\b[^\n\[]{0,30}?(?:\bare\b|\bis\b|:)", text, re.I):
        r = reason_hdr.search(text, hdr.end())
        end = r.start() if r else len(text)
        first = re.search(mention, text[hdr.end():end])
        if first is None:
            continue  # a phrase like "the critical steps are those ..." in the plan: not the list
        blank = re.search(r"\n\s*\n", text[hdr.end() + first.end():end])
        end = hdr.end() + first.end() + blank.start() if blank else end
        named = [i for m in re.finditer(mention, text[hdr.end():end]) for i in indices_in(m.group(1), steps)]
        kept, dropped = take(named, steps, budget)
        break
    else:
        raise ParseError("no 'critical steps are: conversation[...]' list in the answer")
    plan = re.search(r"high[\s-]*level\s+plan(?:\s+is)?\s*:?\s*(.*?)\s*(?:\n\s*)?(?:\d+\.\s*)?(?:the\s+)?"
                     r"critical\s+(?:action\s+)?steps?\s*(?:are|is|:)", text, re.I | re.S)
    # segments: the text after each mention of a kept step, up to the next mention of a kept step
    kept_set, marks = set(kept), []
    for m in re.finditer(mention, text[hdr.end():]):
        ids = [i for i in indices_in(m.group(1), steps) if i in kept_set]
        if ids:
            marks.append((hdr.end() + m.start(), hdr.end() + m.end(), ids))
    segs = {i: ([], []) for i in kept}  # index -> (segments in the Reason part, segments in the list)
    for n, (start, stop, ids) in enumerate(marks):
        seg = text[stop:marks[n + 1][0] if n + 1 < len(marks) else len(text)]
        for i in ids:
            segs[i][0 if start >= end else 1].append(seg)
    reasons = []
    for i in kept:
        in_reason, in_list = segs[i]
        cat = next((c for c in map(category_of, in_reason + in_list) if c), None)
        why = " ".join(s.strip(" \t\n:;,.-)(–—") for s in in_reason).strip() or None
        reasons.append({"index": i, "category": cat, "reason": why})
    return kept, reasons, (plan.group(1).strip() if plan else None) or None, dropped


def parse_json_answer(answer, steps, budget):
    """The structured-output answer {plan, critical_steps: [{index, category, reason}]} -> same as above."""
    body = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", answer)
    try:
        obj = json.loads(body, strict=False)  # raw newlines or tabs inside strings: common, harmless
    except json.JSONDecodeError as e:
        raise ParseError(f"the answer is not JSON ({e.msg})") from None
    items = obj.get("critical_steps") if isinstance(obj, dict) else None
    if not isinstance(items, list):
        raise ParseError("the JSON answer has no 'critical_steps' list")
    named, info = [], {}
    for it in items:
        idx = it.get("index") if isinstance(it, dict) else it
        if isinstance(idx, str) and idx.strip().isdigit():
            idx = int(idx)
        if not isinstance(idx, int) or isinstance(idx, bool):
            continue
        named.append(idx)
        if isinstance(it, dict) and idx not in info:
            info[idx] = (category_of(str(it.get("category", ""))), str(it.get("reason") or "") or None)
    kept, dropped = take(named, steps, budget)
    reasons = [{"index": i, "category": info.get(i, (None, None))[0], "reason": info.get(i, (None, None))[1]}
               for i in kept]
    plan = obj.get("plan") if isinstance(obj.get("plan"), str) else None
    return kept, reasons, plan, dropped
