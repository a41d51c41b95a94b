"""Metrics, each from the library made for it; per-example scores so every number traces back.

Text: exact match, BLEU (sacrebleu), ROUGE-L (rouge-score). Structured output: JSON
validity, JSON-schema compliance (jsonschema), field-level accuracy. Labels: accuracy,
macro precision/recall/F1 and the confusion matrix (scikit-learn). Uncertainty: bootstrap
confidence intervals (scipy) and an exact McNemar test for paired before/after
differences on pass/fail metrics (a binomial test on the discordant pairs, scipy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tunesmith.schemas import parse_json


def exact_match(predictions: list[str], references: list[str]) -> list[float]:
    """1.0 where the prediction equals the reference after stripping surrounding whitespace."""
    return [float(p.strip() == r.strip()) for p, r in zip(predictions, references)]


def bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU (sacrebleu, default 13a tokenisation), 0-100."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(predictions, [references]).score)


def rouge_l(predictions: list[str], references: list[str]) -> list[float]:
    """Per-example ROUGE-L F-measure (rouge-score, with stemming)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]


def json_validity(predictions: list[str]) -> list[float]:
    return [float(parse_json(p) is not None) for p in predictions]


def field_accuracy(predictions: list[str], references: list[str], fields: list[str]) -> dict[str, list[float]]:
    """Per field, 1.0 where the predicted JSON object has the reference's value (case-insensitive for text)."""

    def norm(v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    scores: dict[str, list[float]] = {f: [] for f in fields}
    for p, r in zip(predictions, references):
        pred, ref = parse_json(p), parse_json(r)
        for f in fields:
            ok = isinstance(pred, dict) and isinstance(ref, dict) and f in pred and norm(pred[f]) == norm(ref.get(f))
            scores[f].append(float(ok))
    return scores


def classification(predicted: list[str], expected: list[str]) -> dict[str, Any]:
    """Accuracy, macro precision/recall/F1 and the confusion matrix (labels sorted; unknown predictions kept)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = sorted(set(expected) | set(predicted))
    p, r, f, _ = precision_recall_fscore_support(
        expected, predicted, labels=sorted(set(expected)), average="macro", zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(expected, predicted)),
        "macro_precision": float(p),
        "macro_recall": float(r),
        "macro_f1": float(f),
        "labels": labels,
        "confusion_matrix": confusion_matrix(expected, predicted, labels=labels).tolist(),
    }


def bootstrap_ci(
    values: list[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean over examples."""
    from scipy.stats import bootstrap

    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (float("nan"),) * 3
    if np.all(data == data[0]):
        return float(data[0]), float(data[0]), float(data[0])
    res = bootstrap(
        (data,),
        np.mean,
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return float(data.mean()), float(res.confidence_interval.low), float(res.confidence_interval.high)


def mcnemar_p(before: list[float], after: list[float]) -> float:
    """Exact two-sided McNemar p-value for paired pass/fail outcomes (binomial test on discordant pairs)."""
    from scipy.stats import binomtest

    gained = sum(1 for a, b in zip(before, after) if b > 0.5 >= a)
    lost = sum(1 for a, b in zip(before, after) if a > 0.5 >= b)
    if gained + lost == 0:
        return 1.0
    return float(binomtest(gained, gained + lost, 0.5).pvalue)


def relative_change(
    before: list[float], after: list[float], confidence: float = 0.95, resamples: int = 4000, seed: int = 0
) -> dict[str, Any]:
    """Relative change of a paired pass rate, (after − before) / before, with its one-sided upper
    confidence bound from a paired bootstrap over probes (resampling probes keeps each probe's
    before/after pair together). The bound is what a gate can trust: when even it lies below
    −tolerance, the drop is beyond the tolerance at `confidence`, not a probe or two of noise.
    Also the counts behind it: probes the base passed, lost and gained."""
    b, a = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    base_rate = b.mean() if b.size else 0.0
    out: dict[str, Any] = {
        "base_passed": int(b.sum()),
        "lost": int(((b > 0.5) & (a <= 0.5)).sum()),
        "gained": int(((b <= 0.5) & (a > 0.5)).sum()),
        "confidence": confidence,
    }
    if base_rate == 0:
        return {**out, "change": None, "upper": None}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, b.size, size=(resamples, b.size))
    rb, ra = b[idx].mean(axis=1), a[idx].mean(axis=1)
    ok = rb > 0
    ratios = (ra[ok] - rb[ok]) / rb[ok]
    return {
        **out,
        "change": round(float((a.mean() - base_rate) / base_rate), 4),
        "upper": round(float(np.quantile(ratios, confidence)), 4),
    }


def semantic_similarity(
    predictions: list[str], references: list[str], embedder: str = "all-minilm-l6-v2"
) -> list[float]:
    """Per-example cosine similarity of sentence embeddings (all-MiniLM-L6-v2 by default); 0.0 for empty outputs."""
    from tunesmith.models.embedding import embed

    if not predictions:
        return []
    pred, ref = embed(predictions, embedder), embed(references, embedder)
    sims = (pred * ref).sum(axis=1)
    return [float(s) if p.strip() else 0.0 for s, p in zip(sims, predictions)]


def paired_bootstrap_diff(
    before: list[float], after: list[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean of after − before, low, high): paired percentile bootstrap over examples (scipy)."""
    diffs = [a - b for b, a in zip(before, after)]
    return bootstrap_ci(diffs, confidence, resamples, seed)
