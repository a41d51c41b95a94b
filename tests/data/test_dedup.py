"""Duplicates: exact ignores whitespace, near-duplicates found by MinHash, distinct texts not."""

from __future__ import annotations

from tests.conftest import chat
from tunesmith.data.dedup import DuplicateFinder
from tunesmith.data.records import Conversation, record_text

BASE = "My Router X200 order has not arrived after twelve days and the tracking page shows nothing at all"


def test_exact_near_and_distinct():
    finder = DuplicateFinder(threshold=0.7)
    texts = [
        BASE,
        "  " + BASE.replace(" ", "  "),  # same words, other spacing: exact
        BASE.replace("twelve", "thirteen"),  # one word changed: near
        "How do I export my invoices to CSV from the billing page?",
        BASE + " please help",  # near
    ]
    for key, text in enumerate(texts):
        rec = Conversation(chat(text, "We are sorry, we will check the shipment."))
        finder.add(key, rec, record_text(rec))
    found = finder.duplicates()
    assert [(k, kind) for k, kind, _ in found] == [(1, "exact"), (2, "near"), (4, "near")]
    assert found[0][2] == [0] and found[1][2] == [0] and 0 in found[2][2]  # never the exact copy 1


def test_keys_must_come_in_order():
    import pytest

    finder = DuplicateFinder()
    rec = Conversation(chat())
    with pytest.raises(ValueError):
        finder.add(3, rec, record_text(rec))


def test_a_shared_system_prompt_does_not_make_records_near_duplicates():
    """A long classification prompt shared by every record outweighs a six-word question: left in the
    fingerprint, every pair would be a near-duplicate and the split could not stratify."""
    from tunesmith.data.records import near_dup_text

    system = (
        "Classify the user's message into one of these topics: ai, bot profile, coding, computers, "
        "conversations, emotion, food, gossip, greetings, health, history, humor, literature, money, "
        "movies, politics, psychology, science, sports, tech support, trivia. Reply with the topic only."
    )
    questions = ["What is AI?", "Who wrote Hamlet?", "Tell me a joke about cats", "How do I reverse a list?"]
    finder = DuplicateFinder(threshold=0.8)
    for key, q in enumerate(questions):
        rec = Conversation(chat(q, "trivia", system=system))
        finder.add(key, rec, near_dup_text(rec))
    assert finder.duplicates() == []
    # the same question under two system prompts is still found
    finder = DuplicateFinder(threshold=0.8)
    for key, sys_prompt in enumerate(["You classify tickets.", "You are a helpful assistant."]):
        rec = Conversation(chat(BASE, "shipping", system=sys_prompt))
        finder.add(key, rec, near_dup_text(rec))
    assert [(k, kind) for k, kind, _ in finder.duplicates()] == [(1, "near")]
