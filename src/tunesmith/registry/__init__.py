"""Versioned models in MLflow's registry: lineage, gates, model cards, aliases for rollout."""
