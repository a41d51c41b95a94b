"""Inter-rater agreement, each from the library that implements it.

Ratings come as items × raters, None where a rater skipped an item. Cohen's kappa
(scikit-learn) for two raters on the items both rated; Fleiss' kappa (statsmodels) on the
items every rater rated; Krippendorff's alpha (krippendorff) for any number of raters,
missing ratings allowed, at the nominal, ordinal or interval level.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

Ratings = Sequence[Sequence[Hashable | None]]


def _codes(ratings: Ratings) -> tuple[np.ndarray, list[Hashable]]:
    """Float matrix raters × items with category codes (nan = missing), and the categories."""
    cats = sorted({r for item in ratings for r in item if r is not None}, key=str)
    index = {c: i for i, c in enumerate(cats)}
    data = np.array([[np.nan if r is None else index[r] for r in item] for item in ratings], dtype=float)
    return data.T, cats


def cohen_kappa(first: Sequence[Hashable | None], second: Sequence[Hashable | None]) -> float:
    from sklearn.metrics import cohen_kappa_score

    pairs = [(a, b) for a, b in zip(first, second) if a is not None and b is not None]
    if len(pairs) < 2:
        return float("nan")
    a, b = zip(*pairs)
    return float(cohen_kappa_score([str(x) for x in a], [str(x) for x in b]))


def fleiss_kappa(ratings: Ratings) -> float:
    """Fleiss' kappa over the items rated by every rater."""
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as _fleiss

    complete = [item for item in ratings if all(r is not None for r in item)]
    if len(complete) < 2:
        return float("nan")
    data, _ = _codes(complete)
    table, _ = aggregate_raters(data.T.astype(int))
    with np.errstate(invalid="ignore", divide="ignore"):  # one category used by all: undefined (nan)
        return float(_fleiss(table, method="fleiss"))


def krippendorff_alpha(ratings: Ratings, level: str = "nominal") -> float:
    """Krippendorff's alpha; for ordinal/interval levels the ratings must be numbers."""
    import krippendorff

    if level == "nominal":
        data, cats = _codes(ratings)
        if len(cats) < 2:
            return float("nan")
    else:
        data = np.array([[np.nan if r is None else float(r) for r in item] for item in ratings], dtype=float).T
        if len(set(data[~np.isnan(data)].tolist())) < 2:
            return float("nan")
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))


def agreement(ratings: Ratings, level: str = "nominal") -> dict[str, Any]:
    """The statistics that apply to this many raters."""
    raters = max((len(item) for item in ratings), default=0)
    out: dict[str, Any] = {
        "raters": raters,
        "items": len(ratings),
        "krippendorff_alpha": krippendorff_alpha(ratings, level),
    }
    if raters == 2 and level == "nominal":
        out["cohen_kappa"] = cohen_kappa([i[0] for i in ratings], [i[1] for i in ratings])
    elif raters > 2 and level == "nominal":
        out["fleiss_kappa"] = fleiss_kappa(ratings)
    return {k: (round(v, 4) if isinstance(v, float) and not np.isnan(v) else v) for k, v in out.items()}


def landis_koch(value: float) -> str:
    """The verbal scale of Landis & Koch (1977)."""
    if value != value:
        return "undefined"
    if value < 0:
        return "poor"
    for bound, word in ((0.2, "slight"), (0.4, "fair"), (0.6, "moderate"), (0.8, "substantial")):
        if value <= bound:
            return word
    return "almost perfect"
