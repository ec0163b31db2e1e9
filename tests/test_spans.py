"""The loss mask is the method: check, per chat-template family, that each step's tokens are exactly its content
plus the end-of-turn marker (no header, no user text), that labels follow the loss flags, and the truncation rule.
    pytest -q tests/test_spans.py
"""
import pytest

from tests.tiny import FAMILIES, SPECS, make_records, tiny_tokenizer
from trajectory import IGNORE_INDEX, step_indices, tokenize_record, trim_after_last_loss, with_selection


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param, tiny_tokenizer(request.param)


def records():
    recs = make_records(6, seed=7)
    # awkward contents: surrounding whitespace (Llama/Mistral templates trim it), unicode, a repeated text
    conv = recs[0]["conversations"]
    conv[3]["value"] = "  Thought: café 東京 — ok\nAction: go north  \n"
    conv[2]["value"] = conv[5]["value"] = "Observation: same text twice"
    recs[1] = with_selection(recs[1], step_indices(recs[1])[1:2], {"method": "test"})  # loss on one step only
    return recs


def test_step_tokens_decode_to_content_and_end_of_turn(family):
    fam, tok = family
    eot = SPECS[fam]["eot"]
    for rec in records():
        t = tokenize_record(rec, tok)
        conv = rec["conversations"]
        assert sorted(t["spans"]) == step_indices(rec) and t["n_cut_steps"] == 0
        for i, (s, e) in t["spans"].items():
            text = tok.decode(t["input_ids"][s:e])
            # the content as the template renders it: Llama and Mistral trim it, Qwen keeps it as is
            want = (conv[i]["value"] if fam == "qwen" else conv[i]["value"].strip()) + eot
            # Mistral's template puts one space before the content; byte-level BPE may merge it into the first
            # content token, which then must be learned too. Nothing else may precede the content.
            assert text == want or (fam == "mistral" and text == " " + want), (fam, i, text, want)
            assert "assistant" not in text and "[/INST]" not in text and "<|im_start|>" not in text
        # labels: exactly the tokens of the turns with loss true
        expect = [IGNORE_INDEX] * len(t["input_ids"])
        for i, turn in enumerate(conv):
            if turn["from"] == "gpt" and turn["loss"] is True:
                s, e = t["spans"][i]
                expect[s:e] = t["input_ids"][s:e]
        assert t["labels"] == expect
        assert t["n_loss_tokens"] == sum(l != IGNORE_INDEX for l in expect) > 0
        # the rendering is the template's own tokenisation, token for token
        ids = tok.apply_chat_template([{"role": {"human": "user", "gpt": "assistant"}[c["from"]],
                                        "content": c["value"]} for c in conv], tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        assert t["input_ids"] == list(ids)


def test_selection_masks_only_critical_steps(family):
    fam, tok = family
    rec = records()[1]
    t = tokenize_record(rec, tok)
    assert len(t["spans"]) == len(rec["steps"]) > 1  # every step keeps a span (perplexity scores them all)
    (s, e), = [t["spans"][i] for i in rec["critical_steps"]]
    assert [i for i, l in enumerate(t["labels"]) if l != IGNORE_INDEX] == list(range(s, e))
    assert t["n_keep"] == e


def test_truncation_drops_and_counts_cut_steps(family):
    fam, tok = family
    rec = make_records(1, seed=3, min_steps=5, max_steps=5)[0]
    full = tokenize_record(rec, tok)
    spans = sorted(full["spans"].values())
    s, e = spans[2]
    cut = tokenize_record(rec, tok, max_length=(s + e) // 2)  # cut inside the third step
    assert len(cut["input_ids"]) == (s + e) // 2 and cut["n_tokens"] == len(full["input_ids"])
    assert sorted(cut["spans"].values()) == spans[:2] and cut["n_cut_steps"] == 3 == cut["n_cut_loss_turns"]
    assert all(l == IGNORE_INDEX for l in cut["labels"][spans[1][1]:])  # no half step is trained
    assert cut["labels"][:spans[1][1]] == full["labels"][:spans[1][1]]
    none = tokenize_record(rec, tok, max_length=spans[0][1] - 1)
    assert none["spans"] == {} and none["n_loss_tokens"] == 0 and none["n_keep"] == 0 and none["n_cut_steps"] == 5


def test_trim_keeps_everything_up_to_the_last_loss_token(family):
    fam, tok = family
    rec = records()[1]  # loss on the second step only, so the tail holds later steps
    t = tokenize_record(rec, tok)
    ids, labels = trim_after_last_loss(t)
    assert labels[-1] != IGNORE_INDEX and len(ids) == t["n_keep"] < len(t["input_ids"])
    assert ids == t["input_ids"][:len(ids)] and sum(l != IGNORE_INDEX for l in labels) == t["n_loss_tokens"]
