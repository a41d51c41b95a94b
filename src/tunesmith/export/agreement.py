"""Does an exported GGUF answer like the model it came from? Checked in llama.cpp itself.

The evaluation's test prompts (eval/predictions_fine_tuned.jsonl) are answered greedily twice:
by the merged model in transformers (fp32, one request at a time, so padding plays no part)
and by llama.cpp (llama-cpp-python) loading the GGUF and applying the chat template stored in
the file. Reported: the share of identical answers, the task metric of each, and the share of
llama.cpp answers that ended at the end-of-turn token rather than at the token limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.evaluate.result import EvalResult
from tunesmith.export.gguf_file import ExportError


def llama_cpp_answers(
    gguf: Path,
    prompts: list[list[dict[str, str]]],
    max_new_tokens: int,
    threads: int | None = None,
    lora: Path | None = None,
) -> list[dict[str, Any]]:
    """Greedy answers from llama.cpp, with the chat template read from the GGUF file (and a GGUF LoRA
    adapter applied over it, `lora`), each with its completion tokens."""
    from tunesmith.export.llama import open_gguf

    extra = {"lora_path": str(lora)} if lora else {}
    llm = open_gguf(gguf, n_ctx=4096, threads=threads, seed=0, **extra)
    answers = []
    for messages in prompts:
        out = llm.create_chat_completion(
            messages=messages, temperature=0.0, top_k=1, repeat_penalty=1.0, max_tokens=max_new_tokens
        )
        choice = out["choices"][0]
        answers.append(
            {
                "output": (choice["message"]["content"] or "").strip(),
                "stopped": choice["finish_reason"] == "stop",
                "completion_tokens": out["usage"]["completion_tokens"],
            }
        )
    return answers


def transformers_answers(folder: Path, prompts: list[list[dict[str, str]]], max_new_tokens: int) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.models.generate import generate

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return [o["output"] for o in generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=1)]


def agreement(ours: list[str], theirs: list[dict[str, Any]], references: list[str], score_with: Any) -> dict[str, Any]:
    same = [a == b["output"] for a, b in zip(ours, theirs)]
    return {
        "examples": len(ours),
        "identical": sum(same) / len(same),
        "metric_transformers": score_with(ours),
        "metric_llama_cpp": score_with([t["output"] for t in theirs]),
        "stopped": sum(t["stopped"] for t in theirs) / len(theirs),
    }


def evaluated_test(cfg: Any) -> tuple[list[Any], list[str], int, EvalResult, Callable[[list[str]], float]]:
    """The project's evaluated test prompts (eval/predictions_fine_tuned.jsonl), their references, the
    evaluation's max_new_tokens and result, and the task metric scored as the evaluation scored it."""
    from tunesmith.evaluate.result import metrics_path, read_eval
    from tunesmith.evaluate.scoring import score
    from tunesmith.paths import eval_dir

    predictions = eval_dir(cfg) / "predictions_fine_tuned.jsonl"
    if not predictions.exists() or not metrics_path(cfg).exists():
        raise ExportError(
            f"--check answers the evaluated test prompts and {predictions} is missing; run "
            f"`tunesmith evaluate` on this project first, or export without --check"
        )
    rows = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines() if line.strip()]
    evaluated = read_eval(cfg)
    prompts, references = [r["prompt"] for r in rows], [r["reference"] for r in rows]
    max_new = evaluated.max_new_tokens or 256
    schema = json.loads(cfg.resolve(cfg.eval.json_schema).read_text()) if cfg.eval.json_schema else None

    def task_metric(outputs: list[str]) -> float:
        summary, _ = score(
            outputs,
            references,
            schema,
            evaluated.fields,
            evaluated.task,
            cfg.eval.task_metric,
            False,
            set(references),
        )
        return summary["task_metric"]["mean"]

    return prompts, references, max_new, evaluated, task_metric


def check_gguf(cfg: Any, gguf: Path, merged: Path) -> dict[str, Any]:
    """Agreement of `gguf` (llama.cpp) with the merged folder it was written from (transformers),
    on the project's evaluated test prompts; written beside the GGUF as <name>.agreement.json."""
    prompts, references, max_new, evaluated, task_metric = evaluated_test(cfg)
    ours = transformers_answers(merged, prompts, max_new)
    result = agreement(ours, llama_cpp_answers(gguf, prompts, max_new), references, task_metric)
    result["task_metric_name"] = evaluated.fine_tuned.task_metric_name
    gguf.with_suffix(".agreement.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
