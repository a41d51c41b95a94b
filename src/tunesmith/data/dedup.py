"""Exact and near-duplicate detection, streaming, one record at a time.

Exact duplicates compare the whitespace-normalised text of every turn (roles included).
Near-duplicates use MinHash signatures of word 3-grams with locality-sensitive hashing
(datasketch): each record is compared with the earlier ones in the index, so memory
grows with the number of records, not their size.
"""

from __future__ import annotations

import hashlib
import json
import re

from datasketch import MinHash, MinHashLSH

from tunesmith.data.records import Conversation, Record

_WORD = re.compile(r"\w+", re.UNICODE)
NUM_PERM = 64


def content_key(record: Record) -> bytes:
    """Digest of a record's content (roles and whitespace-normalised text), ignoring meta."""
    if isinstance(record, Conversation):
        parts = [[m["role"], " ".join(m["content"].split())] for m in record.messages]
    else:
        parts = [[m["role"], " ".join(m["content"].split())] for m in record.prompt + record.chosen + record.rejected]
    return hashlib.blake2b(json.dumps(parts, ensure_ascii=False).encode(), digest_size=16).digest()


def shingles(text: str, n: int = 3) -> set[bytes]:
    """Word n-grams of lower-cased text (the words themselves for very short texts)."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {w.encode() for w in words} or {b""}
    return {" ".join(words[i:i + n]).encode() for i in range(len(words) - n + 1)}


def minhash(text: str) -> MinHash:
    m = MinHash(num_perm=NUM_PERM, seed=1)
    m.update_batch(list(shingles(text)))
    return m


class DuplicateFinder:
    """Feed records in order; each call says which earlier record this one duplicates."""

    def __init__(self, threshold: float = 0.8):
        self.threshold = threshold
        self._exact: dict[bytes, int] = {}
        self._lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)

    def add(self, key: int, record: Record, text: str) -> tuple[str, list[int]] | None:
        """Index a record under `key`; return ("exact"|"near", keys of earlier records it repeats) or None."""
        digest = content_key(record)
        first = self._exact.get(digest)
        if first is not None:
            return ("exact", [first])
        self._exact[digest] = key
        signature = minhash(text)
        similar = self._lsh.query(signature)
        self._lsh.insert(key, signature)
        if similar:
            return ("near", sorted(similar))
        return None
