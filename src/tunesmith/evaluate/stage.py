"""The evaluation stage: base, few-shot and fine-tuned models on the same test split, same decoding.

    <output_dir>/eval/
      predictions_{base,few_shot,fine_tuned}.jsonl   every prompt, reference and output
      suite_<suite>_{base,fine_tuned}.jsonl           every probe's answer and verdict
      metrics.json                                   all numbers, with bootstrap intervals

`run_eval` goes plan → generate and score each model → compare → write: the plan is read before any
model loads (evaluate/plan.py); each model then answers the test split and the probe suites (the base
model's answers come from the cache when nothing they depend on changed, evaluate/cache.py); the
comparisons are paired (the same examples for every model).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.evaluate import metrics as m
from tunesmith.evaluate.plan import EvalPlan, judge_key, plan_eval
from tunesmith.evaluate.result import EvalResult, write_eval
from tunesmith.evaluate.scoring import score
from tunesmith.files import write_atomic
from tunesmith.paths import eval_dir, train_dir
from tunesmith.stats import p95

MODELS = ("base", "few_shot", "fine_tuned")

SCORING_BATCH = 8  # conversations a log-probability pass; 16 and 40 measured no faster on 2 cores (bf16, the demo)


def _latency(outs: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = sorted(o["latency_s"] for o in outs)
    tokens = sum(o["new_tokens"] for o in outs)
    batches = sorted({(o["batch"], o["latency_s"]) for o in outs})
    return {
        "batch_latency_p50_s": round(statistics.median(latencies), 3),  # a batch's wall time: throughput's view
        "batch_latency_p95_s": round(p95(latencies), 3),
        "tokens_per_s": round(tokens / sum(b[1] for b in batches), 1) if batches else None,
    }


def _tokens(tokenizer: Any, plan: list[Any], outs: list[dict[str, Any]]) -> dict[str, float]:
    """Tokens a request sends and gets back, on average: what a hosted model bills (evaluate/cost.py)."""
    prompt = [
        len(
            tokenizer.apply_chat_template(
                [{"role": x["role"], "content": x["content"]} for x in p],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=True,
            )["input_ids"]
        )
        for p in plan
    ]
    return {
        "prompt_tokens_mean": round(statistics.mean(prompt), 1),
        "completion_tokens_mean": round(statistics.mean(o["new_tokens"] for o in outs), 1),
    }


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


def run_eval(cfg: ProjectConfig, *, limit: int | None = None) -> EvalResult:
    """Generate with every model on the test split and the suites, score, compare; write the
    predictions, metrics.json (`write_eval`) and the Markdown/HTML report."""
    began = time.perf_counter()
    model_dir = train_dir(cfg) / "model"
    if not model_dir.exists():
        how = f"`tunesmith train {cfg.config_path}`" if cfg.config_path else "`tunesmith.run_train(config)`"
        raise TunesmithError(f"no trained model in {model_dir}; train it first: {how}")
    run = EvalRun(cfg, plan_eval(cfg, limit), model_dir)
    for name, prompts in run.plan.passes.items():
        if name == "fine_tuned":
            run.apply_fine_tune()
        run.task_pass(name, prompts)
        if name != "few_shot":
            run.other_passes(name)
    with run.timed("comparisons"):
        results = run.compare()
    if run.plan.kind != "preference":
        from tunesmith.evaluate.cost import cost_block

        results["cost"] = cost_block(
            cfg, results["models"], **run.size, device=run.device, eval_seconds=time.perf_counter() - began
        )
    result = write_eval(cfg, results)
    from tunesmith.evaluate.report import write_reports

    write_reports(cfg, result)
    return result


class EvalRun:
    """One evaluation in progress: the model in memory (the base, then the fine-tune on it), and what each
    pass has produced so far."""

    def __init__(self, cfg: ProjectConfig, plan: EvalPlan, model_dir: Path) -> None:
        from tunesmith.evaluate.latency import room_for_a_second_copy
        from tunesmith.evaluate.previous import previous_task
        from tunesmith.hardware import pick_device
        from tunesmith.models import inference_dtype, load_model, load_tokenizer

        began = time.perf_counter()
        self.cfg, self.plan, self.model_dir = cfg, plan, model_dir
        self.previous = previous_task(cfg, plan.schema)
        self.device = pick_device(cfg.device)
        self.dtype = inference_dtype(cfg.base_model, self.device, cfg.train.precision)
        self.tokenizer = load_tokenizer(str(model_dir))
        e = cfg.eval
        if e.max_new_tokens == "auto":  # room for the longest reference, so a label task stops in a few tokens
            longest = max(len(self.tokenizer(r, add_special_tokens=False)["input_ids"]) for r in plan.references)
            e = e.model_copy(update={"max_new_tokens": min(1024, int(longest * 1.5) + 16)})
        self.e = e
        self.model = load_model(
            cfg.base_model, dtype=self.dtype, trust_remote_code=cfg.trust_remote_code, device=self.device
        )
        self.size = {
            "params": sum(p.numel() for p in self.model.parameters()),  # for the GPU cost estimates
            "layers": getattr(self.model.config, "num_hidden_layers", 1),
            "dtype": self.dtype,  # the precision the requests are timed in
        }
        self.results: dict[str, Any] = {
            "test_examples": len(plan.test),
            "task": plan.kind,
            "fields": plan.fields,
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "few_shot_examples": len(plan.shots),
            "task_system_prompt": bool(plan.system),
            "decoding": {
                "greedy": True,
                "max_new_tokens": e.max_new_tokens,
                "suite_max_new_tokens": e.suite_max_new_tokens,
            },
            "models": {},
            "suites": {},
            "seconds": {"load the base model": round(time.perf_counter() - began, 3)},
        }
        self.per_example: dict[str, dict[str, list[float]]] = {}
        self.suite_passes: dict[str, dict[str, list[float]]] = {}
        self.answers: dict[str, list[str]] = {}  # preference projects with a judge: both models' answers
        self.harness: dict[str, Any] = {}  # lm-eval scores by model (eval.lm_eval)
        self.reused: list[str] = []  # the base model's passes taken from the cache (evaluate/cache.py)
        self.adapter = (model_dir / "adapter_config.json").exists()
        self.pair_full = not self.adapter and not plan.preference and room_for_a_second_copy(self.model, self.device)
        self.latency: dict[str, dict[str, Any]] = {}  # per-request latency timed ahead of a model's pass
        self.forward: Callable[[], AbstractContextManager] = nullcontext  # what the model's generation runs in
        self.out_dir = eval_dir(cfg)
        self.out_dir.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Adds the block's wall time to `seconds[step]` in metrics.json: where the evaluation's time went
        (to the millisecond, as each batch's `latency_s`, so a step never reads shorter than a batch in it)."""
        began = time.perf_counter()
        try:
            yield
        finally:
            seconds = self.results["seconds"]
            seconds[step] = round(seconds.get(step, 0.0) + time.perf_counter() - began, 3)

    def generate(
        self, name: str, messages: list[Any], max_new_tokens: int, label: str = "", settled: list[Any] | None = None
    ) -> list[dict[str, Any]]:
        from tunesmith.evaluate.cache import base_outputs
        from tunesmith.evaluate.generate import generate

        with self.forward():
            return base_outputs(
                self.cfg,
                name,
                generate,
                self.model,
                self.tokenizer,
                messages,
                max_new_tokens=max_new_tokens,
                batch_size=self.e.rows_per_batch,
                dtype=self.dtype,
                device=self.device,
                reused=self.reused,
                label=label,
                settled=settled,
            )

    def apply_fine_tune(self) -> None:
        """The fine-tuned model: the adapter on the base in memory (merged when eval.merge_adapter says so),
        or the full fine-tune's own weights."""
        import torch
        from peft import PeftModel

        from tunesmith.models import load_model

        if not self.adapter:  # timed beside the base where both fit (evaluate/latency.py), then in its place
            with self.timed("load the fine-tune"):
                tuned = load_model(str(self.model_dir), dtype=self.dtype, device=self.device)
            if self.pair_full and self.e.latency_requests:
                self.pair_latency(tuned)
            self.model = tuned
            return
        with self.timed("load the fine-tune"):
            self.model = PeftModel.from_pretrained(self.model, str(self.model_dir))
        if not self.plan.preference and self.e.latency_requests:  # unmerged, alternating with the base
            self.pair_latency()
        with self.timed("load the fine-tune"):
            merge = self.e.merge_adapter is True or (self.e.merge_adapter == "auto" and self.dtype == torch.float32)
            if merge and not self.model.active_peft_config.is_prompt_learning:
                self.model = self.model.merge_and_unload()  # into the base weights, which no later pass needs
            else:  # as the server runs the adapter: the same tokens, 1.03x faster on the demo (bf16)
                from tunesmith.evaluate.latency import contexts

                self.forward = contexts(self.model)[1]
            self.results["adapter_merged"] = not isinstance(self.model, PeftModel)

    def pair_latency(self, full: Any = None) -> None:
        """The base model's and the fine-tune's per-request latency, alternating prompt by prompt: the adapter
        unmerged on the base in memory, or `full`, a full fine-tune's model, beside it."""
        from tunesmith.console import err
        from tunesmith.evaluate.latency import paired_latency, spread

        sample = spread(self.plan.passes["base"], self.e.latency_requests)
        err.print(f"timing: base and fine-tuned alternating, {len(sample)} requests each, one at a time")
        n = self.e.max_new_tokens
        with self.timed("request latency: base and fine_tuned alternating"):
            base, tuned, how = paired_latency(self.model, self.tokenizer, sample, max_new_tokens=n, full=full)
        self.latency["fine_tuned"] = tuned
        self.results["models"].setdefault("base", {}).update(base)  # its pass ran first (run_eval)
        self.results["latency_timed"] = how

    def task_pass(self, name: str, prompts: list[Any]) -> None:
        """The test split: generated and scored (or, for preference pairs, scored by log-probability)."""
        if self.plan.preference:
            self._preference_pass(name)
        else:
            self._generation_pass(name, prompts)

    def _generation_pass(self, name: str, prompts: list[Any]) -> None:
        from tunesmith.console import err
        from tunesmith.evaluate.heldout import heldout_loss

        plan, e = self.plan, self.e
        err.print(f"generating: {name} ({len(prompts)} test examples)")
        with self.timed(f"{name}: test split"):
            outs = self.generate(name, prompts, e.max_new_tokens)
        with self.timed(f"{name}: scoring"):
            summary, per = score(
                [o["output"] for o in outs],
                plan.references,
                plan.schema,
                plan.fields,
                plan.kind,
                e.task_metric,
                e.semantic_similarity,
                plan.labels,
            )
        summary.update(_latency(outs))
        summary.update(_tokens(self.tokenizer, prompts, outs))
        if name in self.latency:  # timed with the base, alternating (`pair_latency`)
            summary.update(self.latency[name])
        elif name != "few_shot" and self.e.latency_requests and not self.adapter and not self.pair_full:
            from tunesmith.evaluate.latency import own_pass

            with self.timed(f"{name}: request latency"):
                summary.update(own_pass(self, name, prompts))
            self.results["latency_timed"] = "each model in its own pass"
        summary.update(_by_task(per["task_metric"], plan.test))
        summary["stopped_by_end_token"] = round(sum(o["stopped"] for o in outs) / len(outs), 4)
        if e.heldout_loss and name != "few_shot":
            with self.timed(f"{name}: held-out loss"):
                summary["heldout"] = heldout_loss(
                    self.model,
                    self.tokenizer,
                    [r.messages for r in plan.test],
                    system_prompt=plan.resolved_system,
                    batch_size=SCORING_BATCH,
                )
        self.results["models"][name] = summary
        self.per_example[name] = per
        _write_jsonl(
            self.out_dir / f"predictions_{name}.jsonl",
            [
                {
                    "id": r.meta.get("id"),
                    "file": r.meta.get("file"),
                    "line": r.meta.get("line"),
                    "prompt": p,
                    "reference": ref,
                    **o,
                    **{k: v[i] for k, v in per.items()},
                }
                for i, (r, p, ref, o) in enumerate(zip(plan.test, prompts, plan.references, outs))
            ],
        )

    def _preference_pass(self, name: str) -> None:
        from tunesmith.console import err
        from tunesmith.evaluate import preference as pref
        from tunesmith.evaluate.generate import generate

        plan = self.plan
        if self.cfg.eval.judge is not None:  # both models answer, the judge compares (see evaluate/pairwise.py)
            outs = generate(
                self.model,
                self.tokenizer,
                plan.prompts,
                max_new_tokens=self.e.max_new_tokens,
                batch_size=self.e.rows_per_batch,
            )
            self.answers[name] = [o["output"] for o in outs]
        err.print(f"scoring: {name} on {len(plan.test)} held-out preference pairs")
        margin = pref.margins(
            self.model, self.tokenizer, plan.test, system_prompt=plan.resolved_system, batch_size=SCORING_BATCH
        )
        summary, per = pref.summary(margin, self.per_example.get("base", {}).get("margin"))
        summary.update(_by_task(per["task_metric"], plan.test))
        self.results["models"][name] = summary
        self.per_example[name] = per
        _write_jsonl(
            self.out_dir / f"predictions_{name}.jsonl",
            [
                {
                    "id": r.meta.get("id"),
                    "file": r.meta.get("file"),
                    "line": r.meta.get("line"),
                    "prompt": r.prompt,
                    "chosen": r.chosen[-1]["content"],
                    "rejected": r.rejected[-1]["content"],
                    **({"output": self.answers[name][i]} if name in self.answers else {}),
                    **{k: v[i] for k, v in per.items()},
                }
                for i, r in enumerate(plan.test)
            ],
        )

    def other_passes(self, name: str) -> None:
        """Beyond the test split: lm-eval tasks, the previous version's task, and the probe suites."""
        from tunesmith.console import err
        from tunesmith.evaluate.suites import summarize

        cfg, plan, e = self.cfg, self.plan, self.e
        if e.lm_eval is not None:  # standard benchmarks on the model in memory (evaluate/harness.py)
            from tunesmith.evaluate.harness import harness_scores

            err.print(f"lm-eval: {name} on {', '.join(e.lm_eval.tasks)}")
            with self.timed(f"{name}: lm-eval"):
                self.harness[name] = harness_scores(
                    self.model, self.tokenizer, e.lm_eval, cfg.config_path.parent if cfg.config_path else None
                )
        if self.previous is not None:
            with self.timed(f"{name}: previous version's task"):
                score_previous = self.previous.score(self.model, self.tokenizer, name, e.max_new_tokens)
            self.results.setdefault("previous_task", self.previous.header)[name] = score_previous
        for suite, (probes, context) in plan.suites.items():
            err.print(f"generating: {name} on the {suite.replace('_', ' ')} suite ({len(probes)} probes)")
            with self.timed(f"{name}: {suite} suite"):
                outs = self.generate(
                    name,
                    plan.suite_prompts(suite),
                    e.suite_max_new_tokens,
                    label=f"{name} on {suite}",
                    settled=plan.suite_settled(suite),
                )
                scored = plan.score_suite(suite, [o["output"] for o in outs])
            self.results["suites"].setdefault(suite, {"context": context})[name] = summarize(scored)
            self.suite_passes.setdefault(suite, {})[name] = [float(r.passed) for r in scored]
            _write_jsonl(
                self.out_dir / f"suite_{suite}_{name}.jsonl",
                [
                    {
                        "id": r.probe.id,
                        "category": r.probe.category,
                        "output": r.output,
                        "passed": r.passed,
                        "verdict": r.verdict,
                        "reasons": r.reasons,
                        "settled": o.get("settled", False),  # ended once its verdict was decided
                    }
                    for r, o in zip(scored, outs)
                ],
            )

    def compare(self) -> dict[str, Any]:
        """Paired comparisons: the judge's win rate, the previous task's change, each suite's relative
        change against the base, and the task metric of the fine-tune against every other model."""
        cfg, plan, results, per_example = self.cfg, self.plan, self.results, self.per_example
        if {"base", "fine_tuned"} <= set(self.answers):
            from tunesmith.console import err
            from tunesmith.evaluate.pairwise import openai_pairwise_judge, win_rate

            j = cfg.eval.judge
            judge_pair = openai_pairwise_judge(j.base_url, j.model, judge_key(cfg))
            requests = ["\n".join(msg["content"] for msg in p if msg["role"] == "user") for p in plan.prompts]
            err.print(f"judging: fine-tuned against base on {len(requests)} prompts ({j.model} at {j.base_url})")
            wins = win_rate(judge_pair, requests, self.answers["fine_tuned"], self.answers["base"], cfg.seed)
            results["models"]["fine_tuned"]["win_rate_vs_base"] = {k: v for k, v in wins.items() if k != "verdicts"}
        previous = self.previous
        if previous is not None and {"base", "fine_tuned"} <= set(previous.per):
            diff, low, high = m.paired_bootstrap_diff(previous.per["base"], previous.per["fine_tuned"])
            results["previous_task"]["change"] = {"mean": round(diff, 4), "ci95": [round(low, 4), round(high, 4)]}
        for suite, passes in self.suite_passes.items():
            if "base" in passes and "fine_tuned" in passes:
                change = m.relative_change(passes["base"], passes["fine_tuned"], cfg.gate.confidence, seed=cfg.seed)
                results["suites"][suite].update(
                    {
                        "relative_change": change.pop("change"),
                        "relative_change_upper": change.pop("upper"),
                        **change,
                        "mcnemar_p": m.mcnemar_p(passes["base"], passes["fine_tuned"]),
                    }
                )
        key = {"json": "all_fields_correct", "classification": "accuracy", "preference": "preference_accuracy"}.get(
            plan.kind, "exact_match"
        )
        results["comparisons"] = {}
        for other in (k for k in plan.passes if k != "fine_tuned"):
            diff, low, high = m.paired_bootstrap_diff(
                per_example[other]["task_metric"], per_example["fine_tuned"]["task_metric"]
            )
            results["comparisons"][f"fine_tuned_vs_{other}"] = {
                "metric": key,
                "mcnemar_p": m.mcnemar_p(per_example[other][key], per_example["fine_tuned"][key]),
                "task_metric_diff": {"mean": round(diff, 4), "ci95": [round(low, 4), round(high, 4)]},
            }
        if self.harness:
            from tunesmith.evaluate.harness import compare

            results["lm_eval"] = compare(self.harness)
        results["reused_base_outputs"] = self.reused  # passes whose outputs (and latencies) came from the cache
        return results
