"""Evaluation stage: candidate vs base and few-shot baselines, metrics with intervals, quality gates."""
