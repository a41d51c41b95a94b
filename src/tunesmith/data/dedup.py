"""Exact and near-duplicate detection for files of any size.

Exact duplicates compare the whitespace-normalised text of every turn (roles included).
Near-duplicates compare MinHash signatures of word 3-grams (datasketch), banded for
locality-sensitive hashing with datasketch's optimal band/row split for the threshold.

The index is kept here as flat numpy arrays (about 300 bytes a record) rather than in
datasketch's `MinHashLSH`, whose in-memory index costs about 2 KB a record — more than
the records of a typical chat file, which must stream in bounded memory. Candidates
from the bands are confirmed by their estimated Jaccard similarity, so a shared band
alone never makes two records near-duplicates.
"""

from __future__ import annotations

import hashlib
import json
import re
from array import array

import numpy as np
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from tunesmith.data.records import Conversation, Record

_WORD = re.compile(r"\w+", re.UNICODE)
NUM_PERM = 64
MAX_LINKS = 20  # earlier records named per duplicate; enough to keep groups together and find leaks
_TEMPLATE = MinHash(num_perm=NUM_PERM, seed=1)  # permutations drawn once, shared by every signature


def content_key(record: Record) -> bytes:
    """Digest of a record's content (roles and whitespace-normalised text), ignoring meta."""
    if isinstance(record, Conversation):
        parts = [[m["role"], " ".join(m["content"].split())] for m in record.messages]
    else:
        parts = [[m["role"], " ".join(m["content"].split())] for m in record.prompt + record.chosen + record.rejected]
    return hashlib.blake2b(json.dumps(parts, ensure_ascii=False).encode(), digest_size=8).digest()


def shingles(text: str, n: int = 3) -> set[bytes]:
    """Word n-grams of lower-cased text (the words themselves for very short texts)."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {w.encode() for w in words} or {b""}
    return {" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)}


def minhash(text: str) -> MinHash:
    m = MinHash(num_perm=NUM_PERM, seed=1, permutations=_TEMPLATE.permutations, scheme=_TEMPLATE.scheme)
    m.update_batch(list(shingles(text)))
    return m


def _groups(values: np.ndarray) -> list[np.ndarray]:
    """Indices of equal values, each group in ascending index order (groups of 2+ only)."""
    order = np.argsort(values, kind="stable")
    sorted_vals = values[order]
    bounds = np.flatnonzero(np.diff(sorted_vals)) + 1
    return [g for g in np.split(order, bounds) if len(g) > 1]


class DuplicateFinder:
    """Add records in order (keys 0, 1, 2, ...), then ask for the duplicates once at the end."""

    def __init__(self, threshold: float = 0.8):
        self.threshold = threshold
        self.bands, self.rows = _optimal_param(threshold, NUM_PERM, 0.5, 0.5)
        self._exact = array("Q")
        self._signatures = array("I")
        self._band_keys = [array("Q") for _ in range(self.bands)]

    def __len__(self) -> int:
        return len(self._exact)

    def add(self, key: int, record: Record, text: str) -> None:
        if key != len(self._exact):
            raise ValueError(f"keys must be added in order 0, 1, 2, ...; got {key} after {len(self._exact) - 1}")
        self._exact.append(int.from_bytes(content_key(record), "little"))
        values = minhash(text).hashvalues.astype(np.uint32)
        self._signatures.frombytes(values.tobytes())
        for b in range(self.bands):
            band = values[b * self.rows : (b + 1) * self.rows].tobytes()
            self._band_keys[b].append(int.from_bytes(hashlib.blake2b(band, digest_size=8).digest(), "little"))

    def duplicates(self) -> list[tuple[int, str, list[int]]]:
        """(key, "exact"|"near", earlier keys it repeats) for every record that repeats an earlier one."""
        n = len(self._exact)
        if n < 2:
            return []
        found: dict[int, tuple[str, list[int]]] = {}
        for group in _groups(np.frombuffer(self._exact, dtype=np.uint64)):
            for k in group[1:]:
                found[int(k)] = ("exact", [int(group[0])])
        signatures = np.frombuffer(self._signatures, dtype=np.uint32).reshape(n, NUM_PERM)
        candidates: dict[int, set[int]] = {}
        for keys in self._band_keys:
            for group in _groups(np.frombuffer(keys, dtype=np.uint64)):
                group = [int(k) for k in group if int(k) not in found]  # exact copies are represented by the first
                for i, k in enumerate(group[1:], start=1):
                    candidates.setdefault(k, set()).update(group[max(0, i - MAX_LINKS) : i])
        for k, earlier in sorted(candidates.items()):
            ordered = sorted(earlier)
            similarity = (signatures[ordered] == signatures[k]).mean(axis=1)
            close = [e for e, s in zip(ordered, similarity) if s >= self.threshold]
            if close:
                found[k] = ("near", close[:MAX_LINKS])
        return [(k, kind, earlier) for k, (kind, earlier) in sorted(found.items())]
