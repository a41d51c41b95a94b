"""Split: seeded and deterministic, stratified by label, near-duplicates kept in one split."""

from __future__ import annotations

from collections import Counter

from tunesmith.data.split import split_keys


def _labels(n_per_label=(100, 50, 30)):
    labels, k = {}, 0
    for name, n in zip("abc", n_per_label):
        for _ in range(n):
            labels[k] = name
            k += 1
    return labels


def test_same_seed_same_split_other_seed_other_split():
    labels = _labels()
    keys = list(labels)
    one = split_keys(keys, val_size=0.1, test_size=0.1, seed=1, labels=labels)
    assert one == split_keys(keys, val_size=0.1, test_size=0.1, seed=1, labels=labels)
    assert one != split_keys(keys, val_size=0.1, test_size=0.1, seed=2, labels=labels)
    assert sorted(sum(one.values(), [])) == keys


def test_every_label_shared_out_by_the_ratios():
    labels = _labels()
    out = split_keys(list(labels), val_size=0.1, test_size=0.2, seed=0, labels=labels)
    for name, total in Counter(labels.values()).items():
        got = {s: sum(1 for k in ks if labels[k] == name) for s, ks in out.items()}
        assert abs(got["validation"] - 0.1 * total) <= 1
        assert abs(got["test"] - 0.2 * total) <= 1
        assert got["train"] + got["validation"] + got["test"] == total


def test_linked_records_stay_together():
    keys = list(range(60))
    linked = [(0, 1), (1, 2), (10, 11), (20, 21), (30, 31), (40, 41)]
    out = split_keys(keys, val_size=0.2, test_size=0.2, seed=3, linked=linked)
    where = {k: s for s, ks in out.items() for k in ks}
    for a, b in linked:
        assert where[a] == where[b]


def test_tiny_input_keeps_train_nonempty():
    out = split_keys([0], val_size=0.1, test_size=0.1, seed=0)
    assert out == {"train": [0], "validation": [], "test": []}
