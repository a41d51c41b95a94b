"""API keys: stored and compared as SHA-256 digests, from the config and $TUNESMITH_API_KEYS."""

from __future__ import annotations

import hashlib
import os

from tunesmith.config import ServeConfig


def hash_key(key: str) -> str:
    """The SHA-256 hex digest of a key (what the config stores)."""
    return hashlib.sha256(key.encode()).hexdigest()


def accepted_keys(settings: ServeConfig) -> set[str]:
    """SHA-256 digests from the config, plus $TUNESMITH_API_KEYS (digests or plain keys, comma-separated)."""
    keys = {k.lower() for k in settings.api_key_sha256}
    for item in filter(None, (k.strip() for k in os.environ.get("TUNESMITH_API_KEYS", "").split(","))):
        is_digest = len(item) == 64 and all(c in "0123456789abcdefABCDEF" for c in item)
        keys.add(item.lower() if is_digest else hash_key(item))
    return keys
