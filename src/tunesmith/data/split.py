"""Deterministic train / validation / test split, stratified, duplicates kept together.

Written here because no well-kept library does all three at once: scikit-learn's
`train_test_split` stratifies but knows no groups, and `StratifiedGroupKFold` keeps
groups together but splits into equal folds, not given ratios.
"""

from __future__ import annotations

import random
from collections import defaultdict

SPLIT_NAMES = ("train", "validation", "test")


class _Groups:
    """Union-find over record keys: near-duplicates end up in one group."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, k: int) -> int:
        self.parent.setdefault(k, k)
        while self.parent[k] != k:
            self.parent[k] = self.parent[self.parent[k]]
            k = self.parent[k]
        return k

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _allocate(n: int, shares: tuple[float, float, float]) -> list[int]:
    """Split n items into three counts by largest remainder, never leaving train empty when n > 0."""
    raw = [n * s for s in shares]
    counts = [int(r) for r in raw]
    for i in sorted(range(3), key=lambda i: raw[i] - counts[i], reverse=True)[: n - sum(counts)]:
        counts[i] += 1
    if n and counts[0] == 0:
        j = max((1, 2), key=lambda i: counts[i])
        counts[j] -= 1
        counts[0] += 1
    return counts


def split_keys(
    keys: list[int],
    *,
    val_size: float,
    test_size: float,
    seed: int,
    labels: dict[int, str] | None = None,
    linked: list[tuple[int, int]] = (),
) -> dict[str, list[int]]:
    """Assign each key to a split.

    Groups of linked keys (near-duplicates) move together, each label's groups are
    shared out by the ratios separately (stratification), and the same seed gives the
    same split for the same keys.
    """
    groups = _Groups()
    for k in keys:
        groups.find(k)
    for a, b in linked:
        if a in groups.parent and b in groups.parent:
            groups.union(a, b)
    members: dict[int, list[int]] = defaultdict(list)
    for k in keys:
        members[groups.find(k)].append(k)
    strata: dict[str, list[int]] = defaultdict(list)
    for root, ks in members.items():
        strata[(labels or {}).get(ks[0], "")].append(root)

    shares = (1.0 - val_size - test_size, val_size, test_size)
    rng = random.Random(seed)
    out: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for label in sorted(strata):
        roots = sorted(strata[label])
        rng.shuffle(roots)
        size = sum(len(members[r]) for r in roots)
        want = _allocate(size, shares)
        have = [0, 0, 0]
        # Largest groups first, each to the split furthest below its target share.
        for root in sorted(roots, key=lambda r: -len(members[r])):
            gap = [(want[i] - have[i], -i) for i in range(3)]
            target = -max(gap)[1]
            have[target] += len(members[root])
            out[SPLIT_NAMES[target]].extend(members[root])
    return {name: sorted(ks) for name, ks in out.items()}
