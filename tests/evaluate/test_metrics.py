"""Metrics agree with the reference libraries and hand-computed cases, edge cases included."""

from __future__ import annotations

import pytest

from tunesmith.evaluate import metrics as m
from tunesmith.schemas import schema_compliance

SCHEMA = {
    "type": "object",
    "properties": {"category": {"enum": ["billing", "account"]}, "priority": {"type": "string"}},
    "required": ["category", "priority"],
    "additionalProperties": False,
}


def test_exact_match_strips_whitespace_only():
    assert m.exact_match([" a ", "b", "", "É"], ["a", "B", "", "É"]) == [1.0, 0.0, 1.0, 1.0]


def test_bleu_matches_sacrebleu_and_perfect_is_100():
    import sacrebleu

    preds, refs = ["the cat sat on the mat", "hello there"], ["the cat is on the mat", "hello there"]
    assert m.bleu(preds, refs) == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    assert m.bleu(["a b c d"], ["a b c d"]) == pytest.approx(100.0)
    assert m.bleu([""], ["a b c d"]) == 0.0


def test_rouge_l_by_hand():
    # LCS of "the cat sat" and "the cat" is 2 words: P = 2/3, R = 1, F = 0.8
    assert m.rouge_l(["the cat sat"], ["the cat"]) == [pytest.approx(0.8)]
    assert m.rouge_l([""], ["the cat"]) == [0.0]
    assert m.rouge_l(["café crème"], ["café crème"]) == [pytest.approx(1.0)]


def test_json_validity_schema_and_fields():
    outputs = [
        '{"category": "billing", "priority": "high"}',
        '  {"category": "billing", "priority": 3}',
        '{"category": "billing"',
        'Sure! {"category": "account", "priority": "low"}',
        "",
        '{"category": "Billing ", "priority": "low"}',
    ]
    refs = ['{"category": "billing", "priority": "high"}'] * 6
    assert m.json_validity(outputs) == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert schema_compliance(outputs, SCHEMA) == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    acc = m.field_accuracy(outputs, refs, ["category", "priority"])
    assert acc["category"] == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]  # case and whitespace of text values ignored
    assert acc["priority"] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_classification_agrees_with_sklearn():
    from sklearn.metrics import f1_score

    expected = ["a", "a", "b", "b", "c", "c"]
    predicted = ["a", "b", "b", "b", "c", "x"]
    result = m.classification(predicted, expected)
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["macro_f1"] == pytest.approx(f1_score(expected, predicted, labels=["a", "b", "c"], average="macro"))
    assert result["labels"] == ["a", "b", "c", "x"] and result["confusion_matrix"][2] == [0, 0, 1, 1]


def test_bootstrap_interval_contains_the_mean_and_narrows_with_data():
    small = [1.0, 0.0] * 10
    large = [1.0, 0.0] * 500
    mean, lo, hi = m.bootstrap_ci(small)
    assert mean == 0.5 and lo < 0.5 < hi
    _, lo2, hi2 = m.bootstrap_ci(large)
    assert hi2 - lo2 < (hi - lo) / 3
    assert m.bootstrap_ci([1.0, 1.0]) == (1.0, 1.0, 1.0)


def test_mcnemar_exact_by_hand():
    # 6 gained, 0 lost: two-sided exact p = 2 * 0.5**6 = 0.03125
    before, after = [0.0] * 6 + [1.0] * 4, [1.0] * 10
    assert m.mcnemar_p(before, after) == pytest.approx(0.03125)
    assert m.mcnemar_p([1.0, 0.0], [1.0, 0.0]) == 1.0


def test_semantic_similarity_uses_the_packaged_minilm():
    from tunesmith.evaluate.metrics import semantic_similarity

    same, close, far, empty = semantic_similarity(
        ["The invoice was charged twice.", "I was billed two times.", "Bananas are yellow.", ""],
        ["The invoice was charged twice.", "My card was charged twice.", "My card was charged twice.", "anything"],
    )
    assert same == pytest.approx(1.0, abs=1e-4)
    assert close > far + 0.2 and empty == 0.0


def test_paired_bootstrap_difference():
    from tunesmith.evaluate.metrics import paired_bootstrap_diff

    mean, low, high = paired_bootstrap_diff([0, 0, 1, 0] * 10, [1, 1, 1, 0] * 10)
    assert mean == pytest.approx(0.5) and 0 < low < mean < high
