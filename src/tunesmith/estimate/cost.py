"""Cost per request and payback: the formulas, in one place (docs/cost.md writes them out).

- A request on a machine billed by the hour costs its price per second times the seconds the request
  holds the machine. Measured here one request at a time (the evaluation's per-request latency, a
  request log's latencies): concurrent requests share the machine, so this is the upper bound.
- A request on a GPU of the table is estimated, not measured: the prompt at the GPU's dense bf16 peak
  times `mfu`, then each new token at the larger of a memory-bandwidth bound (the weights read once
  per token, at 60% of the datasheet bandwidth) and a floor of 0.05 ms per layer (kernel launches).
- A request to a hosted model costs its prompt and completion tokens at the price per 1,000 tokens.
- Payback: the set-up cost (training and evaluation time at the training machine's price) divided
  by the saving per day (baseline minus fine-tuned, per request, times requests a day).
"""

from __future__ import annotations

from typing import Any

BANDWIDTH_SHARE = 0.6  # of the datasheet bandwidth a decode step reaches (assumed)
LAYER_FLOOR_S = 5e-5  # per layer per new token: kernel launches, even with CUDA graphs (assumed)


def per_1k_local(usd_per_hour: float, seconds_per_request: float) -> float:
    """USD per 1,000 requests on a machine billed by the hour, one request at a time."""
    return usd_per_hour / 3600 * seconds_per_request * 1000


def per_1k_hosted(prompt_tokens: float, completion_tokens: float, usd_per_1k_in: float, usd_per_1k_out: float) -> float:
    """USD per 1,000 requests to a hosted model priced per 1,000 tokens."""
    return (prompt_tokens * usd_per_1k_in + completion_tokens * usd_per_1k_out) / 1000 * 1000


def gpu_seconds(
    gpu: Any, mfu: float, params: int, layers: int, prompt_tokens: float, completion_tokens: float
) -> float | None:
    """Estimated seconds one request holds `gpu` (bf16 weights); None without the GPU's bandwidth."""
    if not getattr(gpu, "memory_tb_s", None):
        return None
    prefill = 2 * params * prompt_tokens / (gpu.bf16_tflops * 1e12 * mfu)
    per_token = max(2 * params / (gpu.memory_tb_s * 1e12 * BANDWIDTH_SHARE), layers * LAYER_FLOOR_S)
    return prefill + completion_tokens * per_token


def payback_days(setup_usd: float, baseline_per_1k: float, tuned_per_1k: float, requests_per_day: int) -> float | None:
    """Days of traffic for the saving to repay the set-up cost; None when the fine-tune saves nothing."""
    saving_per_day = (baseline_per_1k - tuned_per_1k) / 1000 * requests_per_day
    return setup_usd / saving_per_day if saving_per_day > 0 else None
