"""The loss mask: assistant tokens trained, prompt tokens not (the field's most common silent bug)."""

from __future__ import annotations

from tests.conftest import chat
from tunesmith.data.preview import mask_segments
from tunesmith.data.template import IGNORE_INDEX, tokenize_messages


def _trained_text(tok, enc) -> str:
    return "".join(text for text, trained in mask_segments(enc["input_ids"], enc["labels"], tok) if trained)


def test_only_assistant_turns_and_their_end_token_are_trained(tiny_tok):
    msgs = chat("What is the capital of France?", "Paris.", system="Be brief.") + [
        {"role": "user", "content": "And of Italy?"},
        {"role": "assistant", "content": "Rome."},
    ]
    enc = tokenize_messages(msgs, tiny_tok)
    assert len(enc["input_ids"]) == len(enc["labels"])
    assert _trained_text(tiny_tok, enc) == "Paris.<|im_end|>\nRome.<|im_end|>\n"
    untrained = "".join(t for t, trained in mask_segments(enc["input_ids"], enc["labels"], tiny_tok) if not trained)
    for prompt_part in ("Be brief.", "capital of France", "And of Italy?", "<|im_start|>assistant\n"):
        assert prompt_part in untrained
    # the trained labels are exactly the input ids at those positions
    assert all(l == i for i, l in zip(enc["input_ids"], enc["labels"]) if l != IGNORE_INDEX)


def test_train_on_prompt_trains_everything(tiny_tok):
    enc = tokenize_messages(chat(), tiny_tok, train_on_prompt=True)
    assert enc["labels"] == enc["input_ids"]


def test_weight_zero_turn_is_not_trained(tiny_tok):
    msgs = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "bad answer", "weight": 0},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": "good answer"},
    ]
    assert _trained_text(tiny_tok, tokenize_messages(msgs, tiny_tok)) == "good answer<|im_end|>\n"


def test_rendering_matches_the_tokenizers_own_chat_template(tiny_tok):
    msgs = chat("Hello?", "Hi!")
    enc = tokenize_messages(msgs, tiny_tok)
    direct = tiny_tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"]
    assert enc["input_ids"] == list(direct)
