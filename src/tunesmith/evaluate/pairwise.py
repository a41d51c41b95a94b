"""Win rate against the base model by an LLM judge (preference projects, when `eval.judge` is set).

Both models answer the held-out prompts with the same greedy decoding; the judge at any
OpenAI-compatible endpoint sees the prompt and the two answers as "A" and "B" in an order drawn per
example from the seed (judges favour a position; randomising it spreads that bias over both models)
and answers A, B or TIE. Win rate counts a tie as half, with a bootstrap interval (as MT-Bench and
AlpacaEval report it).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from tunesmith.errors import TunesmithError

INSTRUCTION = (
    "You compare two AI assistant replies to the same user request. Judge helpfulness, correctness "
    "and how well each follows the request. Answer with exactly one word: A if reply A is better, "
    "B if reply B is better, TIE if they are equally good."
)


def openai_pairwise_judge(base_url: str, model: str, api_key: str | None) -> Callable[[str, str, str], str]:
    """(request, reply A, reply B) -> "A" | "B" | "TIE", from an OpenAI-compatible endpoint."""
    from openai import OpenAI, OpenAIError

    client = OpenAI(base_url=base_url, api_key=api_key or "not-needed", max_retries=1, timeout=60)

    def judge(request: str, a: str, b: str) -> str:
        try:
            answer = (
                client.chat.completions.create(
                    model=model,
                    temperature=0,
                    max_tokens=4,
                    messages=[
                        {"role": "system", "content": INSTRUCTION},
                        {
                            "role": "user",
                            "content": f"Request:\n{request}\n\nReply A:\n{a}\n\nReply B:\n{b}\n\nBetter reply:",
                        },
                    ],
                )
                .choices[0]
                .message.content
                or ""
            )
        except OpenAIError as exc:
            raise TunesmithError(
                f"the judge at {base_url} failed ({type(exc).__name__}: {exc}); check eval.judge or remove it"
            ) from None
        word = answer.strip().upper()
        for verdict in ("TIE", "A", "B"):
            if word.startswith(verdict):
                return verdict
        raise TunesmithError(
            f"the judge answered {answer[:40]!r}, not A, B or TIE; use a model that follows the instruction"
        )

    return judge


def win_rate(
    judge: Callable[[str, str, str], str], requests: list[str], tuned: list[str], base: list[str], seed: int
) -> dict[str, Any]:
    """The tuned model's win rate against the base (ties count half), with the per-example verdicts."""
    from tunesmith.evaluate.metrics import bootstrap_ci

    rng = random.Random(seed)
    scores, verdicts = [], []
    for request, t, b in zip(requests, tuned, base):
        tuned_first = rng.random() < 0.5
        verdict = judge(request, t, b) if tuned_first else judge(request, b, t)
        winner = "tie" if verdict == "TIE" else ("fine_tuned" if (verdict == "A") == tuned_first else "base")
        verdicts.append(winner)
        scores.append({"fine_tuned": 1.0, "tie": 0.5, "base": 0.0}[winner])
    mean, low, high = bootstrap_ci(scores)
    return {
        "mean": round(mean, 4),
        "ci95": [round(low, 4), round(high, 4)],
        "wins": verdicts.count("fine_tuned"),
        "ties": verdicts.count("tie"),
        "losses": verdicts.count("base"),
        "verdicts": verdicts,
    }
