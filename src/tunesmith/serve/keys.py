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
    return _keys(settings.api_key_sha256, "TUNESMITH_API_KEYS")


def admin_keys(settings: ServeConfig) -> set[str]:
    """The keys allowed on /admin/*: serve.admin_key_sha256 plus $TUNESMITH_ADMIN_KEYS."""
    return _keys(settings.admin_key_sha256, "TUNESMITH_ADMIN_KEYS")


def _keys(configured: list[str], env: str) -> set[str]:
    keys = {k.lower() for k in configured}
    for item in filter(None, (k.strip() for k in os.environ.get(env, "").split(","))):
        is_digest = len(item) == 64 and all(c in "0123456789abcdefABCDEF" for c in item)
        keys.add(item.lower() if is_digest else hash_key(item))
    return keys


def organisation(settings: ServeConfig, digest: str | None) -> str:
    """The organisation a key belongs to: named in serve.organizations, else the key's own ("org-local" without
    keys). Fine-tuned models, jobs, files and their pages belong to one organisation each."""
    if not digest:
        return "org-local"
    for name, digests in settings.organizations.items():
        if digest in {d.lower() for d in digests}:
            return name
    return f"org-{digest[:12]}"


def owned_by(model: str, org: str) -> bool:
    """Whether a served name belongs to `org`: an `ft:<base>:<org>:...` name to its organisation, any other to all."""
    parts = model.split(":")
    return not model.startswith("ft:") or (len(parts) > 2 and parts[2] == org)
