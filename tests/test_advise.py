"""The advisor on the scenarios of the guides' decision matrices."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tunesmith.advise import UseCase, recommend


@pytest.mark.parametrize(
    "case, expected",
    [
        (UseCase("format", 1500, accuracy_target=0.99), "lora"),  # strict JSON at 99%
        (UseCase("knowledge", 5000, changes="monthly", facts_change=True), "rag"),  # fast-changing product facts
        (UseCase("style", 1000), "lora"),  # brand voice, 1,000 examples
        (UseCase("style", 1000, preference_pairs=True), "dpo"),  # ... with preference pairs
        (UseCase("task", 20_000, budget_usd=800), "lora"),  # budget under $1K: no full FT
        (UseCase("format", 60), "prompt_engineering"),  # fewer than 100 examples
        (UseCase("format", 2000, changes="weekly"), "prompt_engineering"),  # requirements change weekly
        (UseCase("task", 50_000, budget_usd=25_000), "full"),  # plenty of data and budget
        (UseCase("format", 2000, gpu_memory_gb=16, params_b=13), "qlora"),  # 13B on a 16 GB GPU
    ],
)
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
    code = (
        "import sys; from tunesmith.cli import main; sys.argv = ['tunesmith', 'advise', '--problem', 'format', "
        "'--examples', '1000', '--accuracy', '0.99']\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    assert proc.returncode == 0, proc.stderr
    assert "Recommendation: lora" in proc.stdout


def _advise(*args, input=None):
    from typer.testing import CliRunner

    from tunesmith.cli import app

    return CliRunner().invoke(app, ["advise", *args], input=input, env={"COLUMNS": "200"})


def test_use_case_from_a_yaml_file(tmp_path):
    case = tmp_path / "usecase.yaml"
    case.write_text("problem: style\nexamples: 1,000\npreference_pairs: yes\nbudget_usd: $500\n")
    result = _advise("--from", str(case))
    assert result.exit_code == 0, result.output
    assert "Recommendation: dpo" in result.output


def test_flags_override_the_file(tmp_path):
    case = tmp_path / "usecase.yaml"
    case.write_text("problem: format\nexamples: 50\n")
    assert "Recommendation: prompt engineering" in _advise("--from", str(case)).output
    assert "Recommendation: lora" in _advise("--from", str(case), "--examples", "800").output


@pytest.mark.parametrize(
    "text, message",
    [
        ("problem: vibes\nexamples: 10\n", "problem='vibes': choose format, knowledge, style, task, behavior"),
        ("problem: format\n", "examples is required"),
        ("problem: format\nexamples: 10\nbudget: 5\n", "unknown field 'budget'"),
        ("problem: format\nexamples: 10\naccuracy_target: 99\n", "a share between 0 and 1"),
        ("- problem\n", "expected a mapping"),
    ],
)
def test_bad_use_case_file_says_which_field(tmp_path, text, message):
    case = tmp_path / "usecase.yaml"
    case.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli", "advise", "--from", str(case)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_interactive_asks_and_asks_again_on_a_wrong_answer():
    # problem, examples (a wrong answer first), changes, facts, budget, accuracy, pairs, gpu, params
    answers = "format\nlots\n2000\n\nno\n800\n0.99\nno\n\n\n"
    result = _advise("--interactive", input=answers)
    assert result.exit_code == 0, result.output
    assert "What is wrong today" in result.output and "examples='lots': a whole number" in result.output
    assert "Recommendation: lora" in result.output and "under $1K" in result.output


def test_no_use_case_and_no_config_is_a_clear_error():
    result = subprocess.run([sys.executable, "-m", "tunesmith.cli", "advise"], capture_output=True, text=True)
    assert result.returncode == 2 and "--problem and --examples" in result.stderr
