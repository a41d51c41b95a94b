"""The evaluation stage: base, few-shot and fine-tuned models on the same test split, same decoding.

    <output_dir>/eval/
      predictions_{base,few_shot,fine_tuned}.jsonl   every prompt, reference and output
      metrics.json                                   all numbers, with bootstrap intervals
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.data.records import Conversation, Message
from tunesmith.data.report import write_atomic, write_json
from tunesmith.data.stage import load_split
from tunesmith.errors import TunesmithError
from tunesmith.evaluate import metrics as m

MODELS = ("base", "few_shot", "fine_tuned")


def eval_dir(cfg: ProjectConfig) -> Path:
    return cfg.output_path / "eval"


def few_shot_prompt(messages: list[Message], shots: list[Conversation]) -> list[Message]:
    """The prompt with solved training examples as earlier turns, after any system message."""
    head = [msg for msg in messages[:1] if msg["role"] == "system"]
    turns = [{"role": msg["role"], "content": msg["content"]} for s in shots for msg in s.messages
             if msg["role"] in ("user", "assistant")]
    return head + turns + messages[len(head):]


def pick_shots(train: list[Conversation], k: int, seed: int) -> list[Conversation]:
    """k training examples, one per label first (so every class is shown), deterministically."""
    import random

    rng = random.Random(seed)
    pool = list(train)
    rng.shuffle(pool)
    chosen, seen = [], set()
    for r in pool:
        label = r.meta.get("label")
        if len(chosen) < k and label not in seen:
            chosen.append(r)
            seen.add(label)
    for r in pool:
        if len(chosen) >= k:
            break
        if r not in chosen:
            chosen.append(r)
    return chosen


def schema_fields(schema: dict[str, Any]) -> list[str]:
    """Fields scored for accuracy by default: required fields with a closed set of values."""
    props = schema.get("properties", {})
    return [f for f in schema.get("required", []) if "enum" in props.get(f, {}) or "const" in props.get(f, {})]


def score(outputs: list[str], references: list[str], schema: dict[str, Any] | None, fields: list[str]
          ) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Summary metrics and the per-example scores behind them."""
    per: dict[str, list[float]] = {"exact_match": m.exact_match(outputs, references),
                                   "rouge_l": m.rouge_l(outputs, references)}
    summary: dict[str, Any] = {"bleu": round(m.bleu(outputs, references), 2)}
    if schema is not None:
        per["json_valid"] = m.json_validity(outputs)
        per["format_compliance"] = m.schema_compliance(outputs, schema)
        by_field = m.field_accuracy(outputs, references, fields)
        for f, values in by_field.items():
            per[f"field:{f}"] = values
        per["task_metric"] = [sum(v[i] for v in by_field.values()) / len(fields) for i in range(len(outputs))]
        per["all_fields_correct"] = [float(all(v[i] == 1.0 for v in by_field.values())) for i in range(len(outputs))]
    else:
        per["task_metric"] = per["exact_match"]
    for name, values in per.items():
        mean, low, high = m.bootstrap_ci(values)
        summary[name] = {"mean": round(mean, 4), "ci95": [round(low, 4), round(high, 4)]}
    return summary, per


def run_eval(cfg: ProjectConfig, *, limit: int | None = None) -> dict[str, Any]:
    """Generate with every model on the test split, score, compare; write predictions and metrics.json."""
    import torch

    from tunesmith.models import load_model, load_tokenizer
    from tunesmith.train.hardware import use_bf16
    from tunesmith.train.stage import train_dir

    e = cfg.eval
    model_dir = train_dir(cfg) / "model"
    if not model_dir.exists():
        raise TunesmithError(f"no trained model in {model_dir}; run `tunesmith train {cfg.config_path or ''}` first")
    test = [r for r in load_split(cfg, "test") if isinstance(r, Conversation) and r.messages[-1]["role"] == "assistant"]
    if not test:
        raise TunesmithError("the test split has no conversations ending in an assistant reply to score")
    test = test[:limit] if limit else test
    train = [r for r in load_split(cfg, "train") if isinstance(r, Conversation)]
    schema = json.loads(cfg.resolve(e.json_schema).read_text()) if e.json_schema else None
    fields = e.fields or (schema_fields(schema) if schema else [])
    prompts = [r.messages[:-1] for r in test]
    references = [r.messages[-1]["content"] for r in test]
    shots = pick_shots(train, e.few_shot, cfg.seed)
    plans = {"base": prompts, "few_shot": [few_shot_prompt(p, shots) for p in prompts], "fine_tuned": prompts}
    if not shots:
        del plans["few_shot"]

    dtype = torch.bfloat16 if use_bf16(cfg.train.bf16) else torch.float32
    tokenizer = load_tokenizer(str(model_dir))
    model = load_model(cfg.base_model, dtype=dtype, trust_remote_code=cfg.trust_remote_code)
    results: dict[str, Any] = {"test_examples": len(test), "fields": fields, "few_shot_examples": len(shots),
                               "decoding": {"greedy": True, "max_new_tokens": e.max_new_tokens}, "models": {}}
    per_example: dict[str, dict[str, list[float]]] = {}
    out_dir = eval_dir(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    from tunesmith.console import err
    from tunesmith.evaluate.generate import generate

    for name, plan in plans.items():
        if name == "fine_tuned":
            from peft import PeftModel

            if (model_dir / "adapter_config.json").exists():
                model = PeftModel.from_pretrained(model, str(model_dir))
            else:
                model = load_model(str(model_dir), dtype=dtype)
        err.print(f"generating: {name} ({len(plan)} test examples)")
        outs = generate(model, tokenizer, plan, max_new_tokens=e.max_new_tokens, batch_size=e.batch_size)
        texts = [o["output"] for o in outs]
        summary, per = score(texts, references, schema, fields)
        latencies = sorted({o["latency_s"] for o in outs})
        tokens = sum(o["new_tokens"] for o in outs)
        summary["latency_p50_s"] = round(statistics.median(latencies), 3)
        summary["latency_p95_s"] = round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 3)
        summary["tokens_per_s"] = round(tokens / sum(latencies), 1) if sum(latencies) else None
        summary["stopped_by_end_token"] = round(sum(o["stopped"] for o in outs) / len(outs), 4)
        results["models"][name] = summary
        per_example[name] = per
        rows = [{"id": r.meta.get("id"), "file": r.meta.get("file"), "line": r.meta.get("line"),
                 "reference": ref, **o, **{k: v[i] for k, v in per.items()}}
                for i, (r, ref, o) in enumerate(zip(test, references, outs))]
        write_atomic(out_dir / f"predictions_{name}.jsonl", "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in rows))
    key = "all_fields_correct" if schema is not None else "exact_match"
    results["comparisons"] = {
        f"fine_tuned_vs_{other}": {"metric": key, "mcnemar_p": m.mcnemar_p(per_example[other][key],
                                                                           per_example["fine_tuned"][key])}
        for other in plans if other != "fine_tuned"}
    write_json(out_dir / "metrics.json", results)
    return results
