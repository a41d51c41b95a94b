"""Drift detection on the bundled ticket data: quiet on held-out tickets, firing on shifted prompts."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from tests.conftest import REPO
from tunesmith.monitor.drift import detect_drift, psi

EXAMPLE = REPO / "examples" / "support-tickets-json" / "data"


def _user(path):
    return [json.loads(line)["messages"][-2]["content"] for line in path.read_text().splitlines() if line.strip()]


def test_psi_textbook_properties():
    rng = np.random.default_rng(0)
    same = rng.normal(size=5000)
    assert psi(same, rng.normal(size=5000)) < 0.02
    assert psi(same, rng.normal(loc=1.0, size=5000)) > 0.5


def test_false_alarm_rate_and_detection(tiny_tok):
    tickets = _user(EXAMPLE / "tickets.jsonl")
    rng = random.Random(0)
    rng.shuffle(tickets)
    reference, calibration, pool = tickets[:250], tickets[250:300], tickets[300:]
    from tunesmith.data.replay import general_prompts

    shifted = [p["prompt"] for p in general_prompts()]  # general questions, not tickets
    cache: dict = {}
    quiet = [
        detect_drift(reference, calibration, rng.sample(pool, 30), tokenizer=tiny_tok, embed_cache=cache)
        for _ in range(20)
    ]
    moved = [
        detect_drift(reference, calibration, rng.sample(shifted, 30), tokenizer=tiny_tok, embed_cache=cache)
        for _ in range(10)
    ]
    false_alarms = sum(r["drift"] for r in quiet) / len(quiet)
    detected = sum(r["drift"] for r in moved) / len(moved)
    print(f"false-alarm rate {false_alarms:.2f} over {len(quiet)} held-out samples; detection {detected:.2f}")
    assert false_alarms <= 0.10 and detected == 1.0
    worst = moved[0]["least_like_training"][0]
    assert worst["similarity"] < np.median([r["similarity"]["calibration_median"] for r in moved])


def test_drift_needs_enough_prompts():
    with pytest.raises(ValueError):
        detect_drift(["a"], ["b"], ["c"])
