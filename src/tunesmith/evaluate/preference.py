"""Held-out preference pairs: does the model prefer the `chosen` reply?

Preference accuracy is the share of held-out pairs where the model gives the chosen reply a higher
log-probability than the rejected one (the summed log-probability of the reply's tokens after the
prompt, with the training loss mask); the base model is measured the same way, so the gain is paired.
Reward accuracy is DPO's own measure (TRL logs it as rewards/accuracies): the tuned model's margin
beats the base model's margin on the same pair, i.e. the implicit reward prefers `chosen`.
"""

from __future__ import annotations

from typing import Any

from tunesmith.data.records import Preference


def margins(
    model: Any, tokenizer: Any, pairs: list[Preference], *, system_prompt: str | None = None, batch_size: int = 8
) -> list[float]:
    """log p(chosen | prompt) − log p(rejected | prompt) per pair."""
    from tunesmith.evaluate.heldout import token_logprobs

    chosen = token_logprobs(
        model, tokenizer, [p.chosen_conversation() for p in pairs], system_prompt=system_prompt, batch_size=batch_size
    )
    rejected = token_logprobs(
        model, tokenizer, [p.rejected_conversation() for p in pairs], system_prompt=system_prompt, batch_size=batch_size
    )
    return [c[0] - r[0] for c, r in zip(chosen, rejected)]


def summary(
    margin: list[float], base_margin: list[float] | None = None
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Metrics (bootstrap intervals) and the per-pair scores behind them; the task metric is preference accuracy."""
    from tunesmith.evaluate.metrics import bootstrap_ci

    per: dict[str, list[float]] = {"preference_accuracy": [float(x > 0) for x in margin], "margin": list(margin)}
    if base_margin is not None:
        per["reward_accuracy"] = [float(t > b) for t, b in zip(margin, base_margin)]
    per["task_metric"] = per["preference_accuracy"]
    out: dict[str, Any] = {"task_metric_name": "preference_accuracy", "pairs": len(margin)}
    for name, values in per.items():
        mean, low, high = bootstrap_ci(values)
        out[name] = {"mean": round(mean, 4), "ci95": [round(low, 4), round(high, 4)]}
    return out, per
