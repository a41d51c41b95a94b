"""Batched greedy generation for evaluation (it lives with the models, which replay generation uses too)."""

from tunesmith.models.generate import generate

__all__ = ["generate"]
