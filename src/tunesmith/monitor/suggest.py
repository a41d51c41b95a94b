"""`tunesmith data suggest`: which examples to label or fix next, from the fine-tuned model's own view.

(a) Training records the fine-tuned model still finds hardest: the highest loss on their trained
    (assistant) tokens after training, with the same loss mask as training. A high loss on a
    record the model was trained on is a likely label error, or a case the data covers too thinly;
    each comes with its loss, its label and the model's own answer.
(b) New inputs (a file of prompts, or the production request log) where the model is least
    certain: the lowest mean log-probability of its own greedy answer, per answer token. The list
    is deduplicated by embedding (MiniLM): an input within cosine 0.9 of a training input is
    covered by the data already, and one within 0.9 of an input already listed adds nothing new,
    so the list covers different inputs; each carries its similarity to the nearest training input.

The JSONL written is in the canonical record format, ready for labelling: the prompt, then the
model's answer as the assistant turn for a labeller to correct, and `meta` with why it was chosen.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.files import write_atomic

DUPLICATE_COSINE = 0.9


def _user_text(messages: list[dict[str, Any]]) -> str:
    users = [m["content"] for m in messages if m.get("role") == "user"]
    return users[-1] if users else ""


def read_prompts(path: Path) -> list[dict[str, Any]]:
    """Prompts from a file `data check` reads: rows with `messages` (a trailing assistant turn is dropped), or
    one text field (`prompt`, `input`, `question`, `text`, `instruction`)."""
    from tunesmith.data.readers import read_rows

    prompts = []
    for row in read_rows(path):
        value = row.value
        if row.error or not isinstance(value, dict):
            raise TunesmithError(
                f"{row.file}:{row.line}: {row.error or 'not an object'}; give one JSON object per line "
                "with `messages` or a `prompt` field"
            )
        if isinstance(value.get("messages"), list) and value["messages"]:
            messages = [m for m in value["messages"] if isinstance(m, dict)]
            if messages and messages[-1].get("role") == "assistant":
                messages = messages[:-1]
        else:
            text = next(
                (
                    value[k]
                    for k in ("prompt", "input", "question", "text", "instruction")
                    if isinstance(value.get(k), str) and value[k].strip()
                ),
                None,
            )
            if text is None:
                raise TunesmithError(
                    f"{row.file}:{row.line}: no `messages` and no prompt field (prompt, input, "
                    "question, text, instruction)"
                )
            messages = [{"role": "user", "content": text}]
        prompts.append({"messages": messages, "source": f"{row.file}:{row.line}"})
    return prompts


def logged_prompts(cfg: ProjectConfig, last: int = 2000) -> list[dict[str, Any]]:
    """The production prompts of the request log (needs `serve.log_texts: true`), newest `last`."""
    from tunesmith.monitor.feedback import _messages, request_log_path
    from tunesmith.serve.requestlog import RequestLog

    path = request_log_path(cfg)
    if not path.exists():
        raise TunesmithError(f"no request log at {path}; serve the model first, or give --inputs FILE")
    log = RequestLog(path)
    rows = [r for r in log.rows(1_000_000) if r["prompt"] and r["status"] == 200 and not r["shadow"]][-last:]
    log.close()
    if not rows:
        raise TunesmithError("the request log holds no prompt texts: set serve.log_texts: true, or give --inputs FILE")
    return [{"messages": _messages(r["prompt"]), "source": f"request {r['id']}"} for r in rows]


def _mean_logprobs(model: Any, tokenizer: Any, prompts: list[list[dict[str, Any]]], answers: list[str]) -> list[float]:
    from tunesmith.evaluate.heldout import token_logprobs

    rows = token_logprobs(
        model, tokenizer, [p + [{"role": "assistant", "content": a}] for p, a in zip(prompts, answers)]
    )
    return [lp / n if n else 0.0 for lp, n in rows]


def _uncertain_inputs(
    model: Any,
    tokenizer: Any,
    prompts: list[dict[str, Any]],
    train: list[Any],
    system: str | None,
    top: int,
    max_new_tokens: int,
) -> list[dict[str, Any]]:
    """List (b): the new inputs the model answers least certainly, leaving out near-copies of training
    inputs and of inputs already listed."""
    import numpy as np

    from tunesmith.data.template import task_system_prompt, with_system_prompt
    from tunesmith.evaluate.generate import generate
    from tunesmith.models.embedding import embed

    # a new input without a system turn gets the task's own, as the evaluation and the server give it
    task_system = task_system_prompt(system, train)
    asked = [with_system_prompt(p["messages"], task_system) for p in prompts]
    answers = [o["output"] for o in generate(model, tokenizer, asked, max_new_tokens=max_new_tokens)]
    certainty = _mean_logprobs(model, tokenizer, asked, answers)
    vectors = embed([_user_text(p["messages"]) for p in prompts])
    known = embed([_user_text(r.messages) for r in train])
    nearest = (vectors @ known.T).max(axis=1)
    chosen: list[int] = []
    for i in np.argsort(certainty):  # least certain first
        if len(chosen) == top:
            break
        if nearest[i] > DUPLICATE_COSINE:
            continue  # a near-copy of a training input: the data covers it already
        if chosen and float((vectors[chosen] @ vectors[i]).max()) > DUPLICATE_COSINE:
            continue  # a near-copy of one already listed
        chosen.append(int(i))
    return [
        {
            "messages": prompts[i]["messages"] + [{"role": "assistant", "content": answers[i]}],
            "meta": {
                "suggest": "uncertain_input",
                "mean_logprob": round(certainty[i], 4),
                "nearest_training_similarity": round(float(nearest[i]), 3),
                "source": prompts[i]["source"],
            },
        }
        for i in chosen
    ]


def suggest(
    cfg: ProjectConfig,
    out: Path,
    *,
    prompts: list[dict[str, Any]] | None = None,
    top: int = 20,
    max_new_tokens: int = 128,
) -> dict[str, Any]:
    """Write list (a) and, given prompts, list (b) to `out` (JSONL) and `out` with .md (the report)."""

    from tunesmith.data.records import Conversation
    from tunesmith.data.stage import load_split, system_prompt_for
    from tunesmith.data.template import with_system_prompt
    from tunesmith.evaluate.generate import generate
    from tunesmith.evaluate.heldout import token_logprobs
    from tunesmith.models import load_tokenizer
    from tunesmith.models.merge import load_trained
    from tunesmith.paths import train_dir

    model_dir = train_dir(cfg) / "model"
    if not model_dir.exists():
        raise TunesmithError(f"no trained model in {model_dir}; run `tunesmith train` first")
    train = [
        r for r in load_split(cfg, "train") if isinstance(r, Conversation) and r.messages[-1]["role"] == "assistant"
    ]
    if not train:
        raise TunesmithError("the train split has no conversations ending in an assistant reply")
    model = load_trained(model_dir, cfg.base_model, trust_remote_code=cfg.trust_remote_code).eval()
    tokenizer = load_tokenizer(str(model_dir))
    system = system_prompt_for(cfg, train)

    scored = token_logprobs(model, tokenizer, [r.messages for r in train], system_prompt=system)
    losses = [-lp / n if n else 0.0 for lp, n in scored]
    hardest = sorted(range(len(train)), key=lambda i: -losses[i])[:top]
    asked = [with_system_prompt(train[i].messages[:-1], system) for i in hardest]
    answers = [o["output"] for o in generate(model, tokenizer, asked, max_new_tokens=max_new_tokens)]
    list_a = [
        {
            "messages": train[i].messages[:-1] + [train[i].messages[-1]],
            "meta": {
                "suggest": "hard_training_record",
                "loss": round(losses[i], 4),
                "file": train[i].meta.get("file"),
                "line": train[i].meta.get("line"),
                "model_answer": answer,
            },
        }
        for i, answer in zip(hardest, answers)
    ]

    list_b = _uncertain_inputs(model, tokenizer, prompts, train, system, top, max_new_tokens) if prompts else []

    rows = list_a + list_b
    write_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    report = out.with_suffix(".md")
    write_atomic(report, _report(list_a, list_b, len(train), len(prompts or [])))
    return {"hard_training_records": list_a, "uncertain_inputs": list_b, "out": str(out), "report": str(report)}


def _report(list_a: list[dict[str, Any]], list_b: list[dict[str, Any]], trained: int, offered: int) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")[:100]

    lines = [
        "# Which examples next",
        "",
        f"## (a) Training records the fine-tuned model finds hardest ({len(list_a)} of {trained})",
        "",
        "High loss after training: a likely label error, or a case the data covers too thinly.",
        "",
        "| loss | where | input | label | the model's answer |",
        "|---|---|---|---|---|",
    ]
    for r in list_a:
        m = r["meta"]
        lines.append(
            f"| {m['loss']:.3f} | {m['file']}:{m['line']} | {cell(_user_text(r['messages']))} | "
            f"{cell(r['messages'][-1]['content'])} | {cell(m['model_answer'])} |"
        )
    lines += [
        "",
        f"## (b) Inputs where the model is least certain ({len(list_b)} of {offered}, near-copies skipped)",
        "",
    ]
    if list_b:
        lines += [
            "| mean log-prob per token | nearest training input (cosine) | source | input | answer |",
            "|---|---|---|---|---|",
        ]
        for r in list_b:
            m = r["meta"]
            lines.append(
                f"| {m['mean_logprob']:.3f} | {m['nearest_training_similarity']:.3f} | {m['source']} | "
                f"{cell(_user_text(r['messages']))} | {cell(r['messages'][-1]['content'])} |"
            )
    else:
        lines.append("No inputs given: `--inputs FILE`, or `--requests` for the production request log.")
    return "\n".join(lines) + "\n"
