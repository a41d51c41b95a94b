"""The evaluation stage: base, few-shot and fine-tuned models on the same test split, same decoding.

    <output_dir>/eval/
      predictions_{base,few_shot,fine_tuned}.jsonl   every prompt, reference and output
      metrics.json                                   all numbers, with bootstrap intervals
"""

from __future__ import annotations

import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.data.records import Conversation, Message, Preference
from tunesmith.data.stage import load_split, system_prompt_for
from tunesmith.data.template import task_system_prompt, with_system_prompt
from tunesmith.errors import TunesmithError
from tunesmith.evaluate import metrics as m
from tunesmith.evaluate.scoring import few_shot_prompt, label_of, pick_shots, score, task_kind
from tunesmith.files import write_atomic, write_json
from tunesmith.paths import eval_dir, train_dir
from tunesmith.train.task_metric import schema_fields

MODELS = ("base", "few_shot", "fine_tuned")

SCORING_BATCH = 8  # conversations a log-probability pass; 16 and 40 measured no faster on 2 cores (bf16, the demo)


def _suites(cfg: ProjectConfig, system: str | None) -> dict[str, tuple[list[Any], str]]:
    """Suite name -> (probes, context): regression as plain chat; safety in the task's context
    (how the model is deployed) and, when that differs, also as plain chat; edge cases in the task's context."""
    from tunesmith.evaluate.suites import load_probes, suite_path

    base = cfg.config_path.parent if cfg.config_path else None
    e, out = cfg.eval, {}
    if e.regression_suite:
        out["regression"] = (load_probes(suite_path(e.regression_suite, "regression", base)), "plain")
    if e.safety_suite:
        probes = load_probes(suite_path(e.safety_suite, "safety", base))
        out["safety"] = (probes, "task")
        if system:
            out["safety_plain_chat"] = (probes, "plain")
    if e.edge_cases:
        out["edge_cases"] = (load_probes(suite_path(e.edge_cases, "edge_cases", base)), "task")
    return out


def _judge_key(cfg: ProjectConfig) -> str | None:
    import os

    j = cfg.eval.judge
    key = os.environ.get(j.api_key_env) if j.api_key_env else None
    if j.api_key_env and not key:
        raise TunesmithError(f"eval.judge.api_key_env names {j.api_key_env}, which is not set in the environment")
    return key


def _judge(cfg: ProjectConfig) -> Any:
    from tunesmith.evaluate.suites import openai_judge

    j = cfg.eval.judge
    if j is None:
        return None
    return openai_judge(j.base_url, j.model, _judge_key(cfg))


def _latency(outs: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = sorted(o["latency_s"] for o in outs)
    tokens = sum(o["new_tokens"] for o in outs)
    batches = sorted({(o["batch"], o["latency_s"]) for o in outs})
    return {"batch_latency_p50_s": round(statistics.median(latencies), 3),  # a batch's wall time: throughput's view
            "batch_latency_p95_s": round(m.p95(latencies), 3),
            "tokens_per_s": round(tokens / sum(b[1] for b in batches), 1) if batches else None}


def _tokens(tokenizer: Any, plan: list[Any], outs: list[dict[str, Any]]) -> dict[str, float]:
    """Tokens a request sends and gets back, on average: what a hosted model bills (evaluate/cost.py)."""
    prompt = [len(tokenizer.apply_chat_template([{"role": x["role"], "content": x["content"]} for x in p],
                                                add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
              for p in plan]
    return {"prompt_tokens_mean": round(statistics.mean(prompt), 1),
            "completion_tokens_mean": round(statistics.mean(o["new_tokens"] for o in outs), 1)}


LATENCY_REQUESTS = 8  # test prompts timed alone per model, spread over the split (a fixed sample)


def _spread(items: list[Any], n: int) -> list[Any]:
    """`n` items evenly spaced through the list (all of them when it has fewer)."""
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)] if n > 1 else items[:1]


def _by_task(values: list[float], records: list[Any]) -> dict[str, Any]:
    """The task metric per task, when the test split holds several (datasets with a `task` name)."""
    tasks = [str(r.meta.get("task", "default")) for r in records]
    if len(set(tasks)) < 2:
        return {}
    out = {}
    for task in sorted(set(tasks)):
        mean, low, high = m.bootstrap_ci([v for v, t in zip(values, tasks) if t == task])
        out[task] = {"mean": round(mean, 4), "ci95": [round(low, 4), round(high, 4)], "examples": tasks.count(task)}
    return {"by_task": out}


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_atomic(path, "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in rows))


def run_eval(cfg: ProjectConfig, *, limit: int | None = None) -> dict[str, Any]:
    """Generate with every model on the test split and the suites, score, compare; write the
    predictions, metrics.json and the Markdown/HTML report."""

    from tunesmith.console import err
    from tunesmith.evaluate import preference as pref
    from tunesmith.evaluate.cache import base_outputs
    from tunesmith.evaluate.generate import generate
    from tunesmith.evaluate.heldout import heldout_loss
    from tunesmith.evaluate.suites import in_task_context, score_probe, summarize
    from tunesmith.hardware import inference_dtype, pick_device
    from tunesmith.models import load_model, load_tokenizer

    began = time.perf_counter()
    e = cfg.eval
    model_dir = train_dir(cfg) / "model"
    if not model_dir.exists():
        raise TunesmithError(f"no trained model in {model_dir}; run `tunesmith train {cfg.config_path or ''}` first")
    held_out = load_split(cfg, "test")
    test: list[Any] = [r for r in held_out if isinstance(r, Conversation) and r.messages[-1]["role"] == "assistant"]
    if not test:  # a preference-only project (DPO, ORPO): held-out pairs give preference accuracy
        test = [r for r in held_out if isinstance(r, Preference)]
    if not test:
        raise TunesmithError("the test split has no conversations ending in an assistant reply, nor preference "
                             "pairs, to score; give test records (data.test_size above 0)")
    test = test[:limit] if limit else test
    train = [r for r in load_split(cfg, "train") if isinstance(r, Conversation)]
    schema = json.loads(cfg.resolve(e.json_schema).read_text()) if e.json_schema else None
    preference = isinstance(test[0], Preference)
    resolved = system_prompt_for(cfg, train)  # data.system_prompt as training used it (auto resolved)
    prompts = [with_system_prompt(r.prompt if preference else r.messages[:-1], resolved) for r in test]
    references = [r.chosen[-1]["content"] if preference else r.messages[-1]["content"] for r in test]
    kind = "preference" if preference else task_kind(cfg, references)
    if kind == "json" and schema is None:
        raise TunesmithError("eval.task is json but eval.json_schema is not set; give the schema file")
    fields = e.fields or (schema_fields(schema) if schema else [])
    if kind == "json" and not fields:
        raise TunesmithError("no JSON fields to score: set eval.fields, or give enum values to required schema fields")
    system = task_system_prompt(resolved, train)
    suites = _suites(cfg, system)
    judge = _judge(cfg)
    # shots come from records in the task's own prompt format (not, e.g., general replay data mixed in)
    pool = [r for r in train if system is None or r.messages[0]["content"] == system
            or (system == resolved and r.messages[0]["role"] != "system")]  # data.system_prompt is added to these
    shots = pick_shots(pool, e.few_shot, cfg.seed)
    plans = {"base": prompts, "few_shot": [few_shot_prompt(p, shots) for p in prompts], "fine_tuned": prompts}
    if not shots:
        del plans["few_shot"]

    labels = {label_of(r.messages[-1]["content"]) for r in pool} if kind == "classification" else set()

    def on_task(text: str) -> bool:
        """Stayed in the task's output format: one of the training labels (classification) or a JSON object
        (a code fence around it is tolerated)."""
        if kind == "classification":
            return label_of(text) in labels
        body = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
        return isinstance(m.parse_json(body), dict)

    def valid(text: str) -> bool:
        return schema is not None and m.schema_compliance([text], schema)[0] == 1.0

    from tunesmith.evaluate.previous import previous_task

    previous = previous_task(cfg, schema)
    answers: dict[str, list[str]] = {}
    device = pick_device(cfg.device)
    dtype = inference_dtype(device, cfg.train.precision)
    tokenizer = load_tokenizer(str(model_dir))
    if e.max_new_tokens == "auto":  # room for the longest reference, so a label task stops in a few tokens
        longest = max(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in references)
        e = e.model_copy(update={"max_new_tokens": min(1024, int(longest * 1.5) + 16)})
    rows = e.rows_per_batch
    model = load_model(cfg.base_model, dtype=dtype, trust_remote_code=cfg.trust_remote_code, device=device)
    size = {"params": sum(p.numel() for p in model.parameters()),  # for the GPU cost estimates
            "layers": getattr(model.config, "num_hidden_layers", 1)}
    results: dict[str, Any] = {"test_examples": len(test), "task": kind, "fields": fields, "device": device,
                               "dtype": str(dtype).removeprefix("torch."),
                               "few_shot_examples": len(shots), "task_system_prompt": bool(system),
                               "decoding": {"greedy": True, "max_new_tokens": e.max_new_tokens,
                                            "suite_max_new_tokens": e.suite_max_new_tokens},
                               "models": {}, "suites": {}}
    per_example: dict[str, dict[str, list[float]]] = {}
    suite_passes: dict[str, dict[str, list[float]]] = {}
    out_dir = eval_dir(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)

    reused: list[str] = []  # the base model's passes taken from the cache (evaluate/cache.py)
    harness: dict[str, Any] = {}  # lm-eval scores by model (eval.lm_eval)

    def _generate_and_score(name: str, plan: list[list[Message]]) -> None:
        err.print(f"generating: {name} ({len(plan)} test examples)")
        outs = base_outputs(cfg, name, generate, model, tokenizer, plan, max_new_tokens=e.max_new_tokens,
                            batch_size=rows, dtype=dtype, device=device, reused=reused)
        texts = [o["output"] for o in outs]
        summary, per = score(texts, references, schema, fields, kind, e.task_metric, e.semantic_similarity, labels)
        summary.update(_latency(outs))
        summary.update(_tokens(tokenizer, plan, outs))
        if name != "few_shot":  # what one request costs (batch 1), the figure the latency gate compares
            from tunesmith.models.generate import request_latency

            err.print(f"timing: {name}, {min(LATENCY_REQUESTS, len(plan))} requests one at a time")
            summary.update(request_latency(model, tokenizer, _spread(plan, LATENCY_REQUESTS),
                                           max_new_tokens=e.max_new_tokens))
        summary.update(_by_task(per["task_metric"], test))
        summary["stopped_by_end_token"] = round(sum(o["stopped"] for o in outs) / len(outs), 4)
        if e.heldout_loss and name != "few_shot":
            summary["heldout"] = heldout_loss(model, tokenizer, [r.messages for r in test],
                                              system_prompt=resolved, batch_size=SCORING_BATCH)
        results["models"][name] = summary
        per_example[name] = per
        _write_jsonl(out_dir / f"predictions_{name}.jsonl",
                     [{"id": r.meta.get("id"), "file": r.meta.get("file"), "line": r.meta.get("line"),
                       "prompt": p, "reference": ref, **o, **{k: v[i] for k, v in per.items()}}
                      for i, (r, p, ref, o) in enumerate(zip(test, plan, references, outs))])

    for name, plan in plans.items():
        if name == "fine_tuned":
            import torch
            from peft import PeftModel

            if (model_dir / "adapter_config.json").exists():
                model = PeftModel.from_pretrained(model, str(model_dir))
                merge = e.merge_adapter is True or (e.merge_adapter == "auto" and dtype == torch.float32)
                if merge and not model.active_peft_config.is_prompt_learning:
                    model = model.merge_and_unload()  # into the base weights, which no later pass needs
                results["adapter_merged"] = not isinstance(model, PeftModel)
            else:
                model = load_model(str(model_dir), dtype=dtype, device=device)
        if kind == "preference":
            if cfg.eval.judge is not None:  # both models answer, the judge compares (see evaluate/pairwise.py)
                outs = generate(model, tokenizer, prompts, max_new_tokens=e.max_new_tokens, batch_size=rows)
                answers[name] = [o["output"] for o in outs]
            err.print(f"scoring: {name} on {len(test)} held-out preference pairs")
            margin = pref.margins(model, tokenizer, test, system_prompt=resolved, batch_size=SCORING_BATCH)
            summary, per = pref.summary(margin, per_example.get("base", {}).get("margin"))
            summary.update(_by_task(per["task_metric"], test))
            results["models"][name] = summary
            per_example[name] = per
            _write_jsonl(out_dir / f"predictions_{name}.jsonl",
                         [{"id": r.meta.get("id"), "file": r.meta.get("file"), "line": r.meta.get("line"),
                           "prompt": r.prompt, "chosen": r.chosen[-1]["content"], "rejected": r.rejected[-1]["content"],
                           **({"output": answers[name][i]} if name in answers else {}),
                           **{k: v[i] for k, v in per.items()}} for i, r in enumerate(test)])
        else:
            _generate_and_score(name, plan)
        if name == "few_shot":
            continue
        if e.lm_eval is not None:  # standard benchmarks on the model in memory (evaluate/harness.py)
            from tunesmith.evaluate.harness import harness_scores

            err.print(f"lm-eval: {name} on {', '.join(e.lm_eval.tasks)}")
            harness[name] = harness_scores(model, tokenizer, e.lm_eval, cfg.config_path.parent if cfg.config_path
                                           else None)
        if previous is not None:
            results.setdefault("previous_task", previous.header)[name] = previous.score(model, tokenizer, name,
                                                                                           e.max_new_tokens)
        for suite, (probes, context) in suites.items():
            err.print(f"generating: {name} on the {suite.replace('_', ' ')} suite ({len(probes)} probes)")
            messages = [in_task_context(p.messages, system) if context == "task" else p.messages for p in probes]
            outs = base_outputs(cfg, name, generate, model, tokenizer, messages, max_new_tokens=e.suite_max_new_tokens,
                                batch_size=rows, dtype=dtype, device=device, reused=reused,
                                label=f"{name} on {suite}")
            task = context == "task" and (schema is not None or kind == "classification")
            scored = [score_probe(p, o["output"], on_task=on_task if task else None, valid=valid if schema else None,
                                  judge=judge) for p, o in zip(probes, outs)]
            results["suites"].setdefault(suite, {"context": context})[name] = summarize(scored)
            suite_passes.setdefault(suite, {})[name] = [float(r.passed) for r in scored]
            _write_jsonl(out_dir / f"suite_{suite}_{name}.jsonl",
                         [{"id": r.probe.id, "category": r.probe.category, "output": r.output, "passed": r.passed,
                           "verdict": r.verdict, "reasons": r.reasons} for r in scored])
    if {"base", "fine_tuned"} <= set(answers):
        from tunesmith.evaluate.pairwise import openai_pairwise_judge, win_rate

        j = cfg.eval.judge
        judge_pair = openai_pairwise_judge(j.base_url, j.model, _judge_key(cfg))
        requests = ["\n".join(msg["content"] for msg in p if msg["role"] == "user") for p in prompts]
        err.print(f"judging: fine-tuned against base on {len(requests)} prompts ({j.model} at {j.base_url})")
        wins = win_rate(judge_pair, requests, answers["fine_tuned"], answers["base"], cfg.seed)
        results["models"]["fine_tuned"]["win_rate_vs_base"] = {k: v for k, v in wins.items() if k != "verdicts"}
    if previous is not None and {"base", "fine_tuned"} <= set(previous.per):
        diff, low, high = m.paired_bootstrap_diff(previous.per["base"], previous.per["fine_tuned"])
        results["previous_task"]["change"] = {"mean": round(diff, 4), "ci95": [round(low, 4), round(high, 4)]}
    for suite, passes in suite_passes.items():
        if "base" in passes and "fine_tuned" in passes:
            change = m.relative_change(passes["base"], passes["fine_tuned"], cfg.gate.confidence, seed=cfg.seed)
            results["suites"][suite].update({"relative_change": change.pop("change"),
                                             "relative_change_upper": change.pop("upper"), **change,
                                             "mcnemar_p": m.mcnemar_p(passes["base"], passes["fine_tuned"])})
    key = {"json": "all_fields_correct", "classification": "accuracy", "preference": "preference_accuracy"}.get(
        kind, "exact_match")
    results["comparisons"] = {}
    for other in (k for k in plans if k != "fine_tuned"):
        diff, low, high = m.paired_bootstrap_diff(per_example[other]["task_metric"], per_example["fine_tuned"]["task_metric"])
        results["comparisons"][f"fine_tuned_vs_{other}"] = {
            "metric": key, "mcnemar_p": m.mcnemar_p(per_example[other][key], per_example["fine_tuned"][key]),
            "task_metric_diff": {"mean": round(diff, 4), "ci95": [round(low, 4), round(high, 4)]}}
    if harness:
        from tunesmith.evaluate.harness import compare

        results["lm_eval"] = compare(harness)
    results["reused_base_outputs"] = reused  # passes whose outputs (and latencies) came from the cache
    if kind != "preference":
        from tunesmith.evaluate.cost import cost_block

        results["cost"] = cost_block(cfg, results["models"], **size, device=device,
                                     eval_seconds=time.perf_counter() - began)
    write_json(out_dir / "metrics.json", results)
    from tunesmith.evaluate.report import write_reports

    write_reports(cfg, results)
    return results
