"""`cost:` — what the machines and the hosted baseline cost, for cost per request and payback.

Every price here is an illustrative default (a small cloud VM; a small hosted model's list price),
labelled as such wherever a figure computed from it appears: replace them with yours.
"""

from __future__ import annotations

from pydantic import Field

from tunesmith.config.section import Section


class CostConfig(Section):
    serving_usd_per_hour: float = Field(0.10, ge=0)
    """Price per hour of the machine that serves the fine-tuned model (illustrative: a 2-vCPU cloud VM)."""

    training_usd_per_hour: float = Field(0.10, ge=0)
    """Price per hour of the machine that trains and evaluates (illustrative: the same 2-vCPU VM)."""

    baseline_name: str = "a small hosted model, few-shot"
    """What the fine-tune is compared with: by default the few-shot prompt the evaluation builds, sent to a
    hosted model at the prices below."""

    baseline_usd_per_1k_input_tokens: float = Field(0.00015, ge=0)
    """The baseline's price per 1,000 prompt tokens (illustrative: a small hosted model's list price)."""

    baseline_usd_per_1k_output_tokens: float = Field(0.0006, ge=0)
    """The baseline's price per 1,000 completion tokens (illustrative)."""

    requests_per_day: int = Field(10_000, ge=1)
    """Requests a day the model will answer: sets the payback period."""
