"""The advisor on the scenarios of the guides' decision matrices."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tunesmith.advise import UseCase, recommend


@pytest.mark.parametrize("case, expected", [
    (UseCase("format", 1500, accuracy_target=0.99), "lora"),                    # strict JSON at 99%
    (UseCase("knowledge", 5000, changes="monthly", facts_change=True), "rag"),  # fast-changing product facts
    (UseCase("style", 1000), "lora"),                                           # brand voice, 1,000 examples
    (UseCase("style", 1000, preference_pairs=True), "dpo"),                     # ... with preference pairs
    (UseCase("task", 20_000, budget_usd=800), "lora"),                          # budget under $1K: no full FT
    (UseCase("format", 60), "prompt_engineering"),                              # fewer than 100 examples
    (UseCase("format", 2000, changes="weekly"), "prompt_engineering"),          # requirements change weekly
    (UseCase("task", 50_000, budget_usd=25_000), "full"),                       # plenty of data and budget
    (UseCase("format", 2000, gpu_memory_gb=16, params_b=13), "qlora"),          # 13B on a 16 GB GPU
])
def test_decision_matrix_scenarios(case, expected):
    advice = recommend(case)
    assert advice.recommendation == expected, advice
    assert advice.reasons


def test_reasons_name_the_deciding_facts():
    assert "under $1K" in " ".join(recommend(UseCase("task", 20_000, budget_usd=800)).reasons)
    assert "99%" in " ".join(recommend(UseCase("format", 1500, accuracy_target=0.99)).reasons)
    both = recommend(UseCase("format", 500, facts_change=True))
    assert both.recommendation == "rag" and any("LoRA" in a for a in both.also)


def test_cli_answers_without_importing_torch():
    code = ("import sys; from tunesmith.cli import main; sys.argv = ['tunesmith', 'advise', '--problem', 'format', "
            "'--examples', '1000', '--accuracy', '0.99']\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert "Recommendation: lora" in proc.stdout
