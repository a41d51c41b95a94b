"""Shared fixtures: a tiny random model folder and its tokenizer, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TUNESMITH_EVAL_CACHE", "0")  # each test generates; tests/evaluate/test_eval_cache.py turns it on


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from tunesmith.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_tok(tiny_model_dir):
    from tunesmith.models import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


def chat(user: str = "Hello?", assistant: str = "Hi there.", system: str | None = None) -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
