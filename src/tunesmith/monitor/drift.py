"""Input drift: have production prompts moved away from the training data?

Two features per prompt: its length in tokens, and its similarity to the training data —
the cosine similarity of its all-MiniLM-L6-v2 embedding to the nearest training prompt.
Each is compared between a calibration sample the model was not trained on (the
validation split: what "no drift" looks like) and the recent production prompts, with a
two-sample Kolmogorov-Smirnov test (scipy) and the population stability index (PSI,
10 quantile bins of the calibration sample; written here, it is one line of arithmetic
that no well-kept library ships on its own). Drift is declared for a feature when both
agree: p < `alpha` and PSI > `psi_threshold` (0.2 is the usual "significant shift" mark);
requiring both keeps false alarms rare on small windows. The prompts least like the
training data are listed.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of `actual` against `expected`, on quantile bins of `expected`."""
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0 if np.allclose(actual, expected[0]) else float("inf")
    edges[0], edges[-1] = -np.inf, np.inf
    e = np.histogram(expected, edges)[0] / len(expected)
    a = np.histogram(actual, edges)[0] / len(actual)
    e, a = np.clip(e, 1e-4, None), np.clip(a, 1e-4, None)
    return float(np.sum((a - e) * np.log(a / e)))


def nearest_similarity(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine similarity of each (unit-length) query embedding to its nearest reference embedding."""
    return (queries @ reference.T).max(axis=1)


def compare(calibration: np.ndarray, recent: np.ndarray, alpha: float, psi_threshold: float) -> dict[str, Any]:
    from scipy.stats import ks_2samp

    test = ks_2samp(calibration, recent)
    value = psi(calibration, recent)
    return {
        "ks_statistic": round(float(test.statistic), 4),
        "p_value": float(test.pvalue),
        "psi": round(value, 4),
        "calibration_median": round(float(np.median(calibration)), 4),
        "recent_median": round(float(np.median(recent)), 4),
        "drift": bool(test.pvalue < alpha and value > psi_threshold),
    }


def detect_drift(
    reference: list[str],
    calibration: list[str],
    recent: list[str],
    *,
    tokenizer: Any = None,
    alpha: float = 0.01,
    psi_threshold: float = 0.2,
    show: int = 5,
    embed_cache: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Drift of `recent` prompts vs the training `reference`, calibrated on held-out `calibration` prompts."""
    from tunesmith.models.embedding import embed

    if len(recent) < 2 or len(calibration) < 2 or not reference:
        raise ValueError("drift needs at least 2 recent and 2 calibration prompts and a reference set")
    cache = embed_cache if embed_cache is not None else {}
    if "reference" not in cache:
        cache["reference"] = embed(reference)
        cache["calibration"] = nearest_similarity(embed(calibration), cache["reference"])
    recent_sim = nearest_similarity(embed(recent), cache["reference"])
    out: dict[str, Any] = {
        "recent": len(recent),
        "calibration": len(calibration),
        "reference": len(reference),
        "similarity": compare(cache["calibration"], recent_sim, alpha, psi_threshold),
    }
    if tokenizer is not None:

        def lengths(texts: list[str]) -> np.ndarray:
            return np.array([len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts], dtype=float)

        if "calibration_lengths" not in cache:
            cache["calibration_lengths"] = lengths(calibration)
        out["length"] = compare(cache["calibration_lengths"], lengths(recent), alpha, psi_threshold)
    out["drift"] = any(out[k]["drift"] for k in ("similarity", "length") if k in out)
    order = np.argsort(recent_sim)[:show]
    out["least_like_training"] = [
        {"prompt": recent[i][:200], "similarity": round(float(recent_sim[i]), 4)} for i in order
    ]
    return out
