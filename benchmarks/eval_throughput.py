"""Evaluation generation: one example at a time vs tunesmith's batched generation (left padding, KV
cache, greedy), on the same prompts with the packaged SmolLM2, and whether the outputs are identical.

Rounds alternate (one-at-a-time, batched), each recording the CPU share other processes took
(/proc/stat); rounds where others took more than --max-other-load are dropped and medians of the
rest are reported. Throughput is generated tokens per second; the issue's target is >= 4x.

    .venv/bin/python benchmarks/eval_throughput.py [--examples 32] [--batch-size auto|N] [--rounds 3] [--precision bf16|fp32]

With --adapter (a trained LoRA adapter's folder, or `random`: r=16 on every projection, small random
weights), it compares instead the fine-tuned passes' two ways of generating, both batched: through
peft's unmerged adapter, and with the adapter merged into the weights (eval.merge_adapter), and
counts the answers that are the same.

With --passes CONFIG (a project that has been trained, e.g. the demo after `make demo`), it compares the
evaluation's own passes, generated as `tunesmith eval` generates them (the base and the fine-tuned model
on the test split and on each probe suite), with transformers' `generate` (every row stays in the batch
until the last one ends) against `greedy_decode` (finished rows dropped): seconds per pass, outputs
identical, each probe's verdict identical, and the pass rates or task metric of both. With --settled as
well, the suites' passes instead, both through `greedy_decode`: every answer generated whole against
answers ended as soon as their probe's verdict is settled (evaluate/suites.settled_test). With --rows
instead, the fine-tuned passes of an unmerged LoRA adapter, both as `tunesmith eval` ends them: through
peft's forward against `models/multilora.rows` (the server's path, which the evaluation takes). With
--prepack instead, the base and fine-tuned passes as `tunesmith eval` runs them, on plain bf16 weights
against weights prepacked for the decoding steps (models/prepack.py), and the evaluation's per-request
latency sample (each prompt alone) both ways. With --kv instead, the base and fine-tuned passes as
`tunesmith eval` runs them, on transformers' DynamicCache (each step concatenates the whole KV cache) against
models/kvcache.growing_cache (each step written into room reserved at the prefill). With --prefill instead,
each batch's prompts prefilled together, padded to the longest, against in groups of similar lengths
(models/generate.prefill, PREFILL_ROWS a group).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cpuload import OtherLoad  # noqa: E402

PROMPTS = [
    "What is the capital of {}?",
    "Write one sentence about {}.",
    "Give a synonym for '{}'.",
    "Translate '{}' into French.",
    "Is {} a country? Answer yes or no.",
    "Describe {} in five words.",
]
WORDS = ["France", "rain", "happy", "Japan", "music", "bread", "Peru", "winter", "quick", "Kenya", "river", "light"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument(
        "--batch-size",
        default="auto",
        help="rows per batch, or auto (eval.batch_size's default: as many as fit, up to 128)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--max-other-load", type=float, default=0.25)
    parser.add_argument("--adapter", default=None, help="a LoRA adapter folder, or random: unmerged vs merged")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="base model: a name or a local folder")
    parser.add_argument("--passes", default=None, help="a trained project's tunesmith.yaml: its evaluation passes")
    parser.add_argument(
        "--settled",
        action="store_true",
        help="with --passes: the suites' answers generated whole vs ended once their verdict is settled",
    )
    parser.add_argument(
        "--rows",
        action="store_true",
        help="with --passes: the unmerged fine-tune's passes through peft's forward vs models/multilora.rows",
    )
    parser.add_argument(
        "--prepack",
        action="store_true",
        help="with --passes: plain bf16 weights vs weights prepacked for decoding (models/prepack.py)",
    )
    parser.add_argument(
        "--kv",
        action="store_true",
        help="with --passes: transformers' DynamicCache vs models/kvcache.growing_cache in the decoding steps",
    )
    parser.add_argument(
        "--prefill",
        action="store_true",
        help="with --passes: each batch's prompts prefilled together vs in groups (models/generate.PREFILL_ROWS)",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.passes:
        return compare_passes(args)
    if args.adapter:
        return compare_merged(args)
    import torch

    from tunesmith.hardware import pick_device
    from tunesmith.models import load_model, load_tokenizer
    from tunesmith.models.generate import generate

    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    model = load_model(args.model, dtype=dtype, device=pick_device())  # a CUDA GPU where there is one
    tok = load_tokenizer(args.model)
    prompts = [
        [{"role": "user", "content": PROMPTS[i % len(PROMPTS)].format(WORDS[i % len(WORDS)])}]
        for i in range(args.examples)
    ]
    generate(model, tok, prompts[:2], max_new_tokens=4, batch_size=2)  # warm-up
    size = None if args.batch_size == "auto" else int(args.batch_size)
    kept, outputs, dropped = alternate({"one": (model, 1), "batched": (model, size)}, tok, prompts, args)
    same = sum(a == b for a, b in zip(outputs["one"], outputs["batched"]))
    result = {
        "device": str(model.device),
        "precision": args.precision,
        "examples": args.examples,
        "batch_size": args.batch_size,
        "one_at_a_time_tok_s": round(statistics.median(kept["one"]), 1) if kept["one"] else None,
        "batched_tok_s": round(statistics.median(kept["batched"]), 1) if kept["batched"] else None,
        "identical_outputs": f"{same}/{args.examples}",
        "rounds_dropped": dropped,
    }
    if kept["one"] and kept["batched"]:
        result["ratio"] = round(result["batched_tok_s"] / result["one_at_a_time_tok_s"], 2)
    report(result, args)


def report(result: dict, args) -> None:
    print(json.dumps(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


def alternate(runs: dict, tok, prompts, args) -> tuple[dict[str, list[float]], dict[str, list[str]], int]:
    """`runs` (name -> (model, batch size)) in turn, `args.rounds` times: each one's generated tokens/s in
    the rounds other processes left alone, its last outputs, and how many runs were dropped for load."""
    from tunesmith.models.generate import generate

    kept: dict[str, list[float]] = {name: [] for name in runs}
    outputs: dict[str, list[str]] = {}
    dropped = 0
    for _ in range(args.rounds):
        for name, (model, size) in runs.items():
            with OtherLoad() as load:
                began = time.perf_counter()
                outs = generate(model, tok, prompts, max_new_tokens=args.max_new_tokens, batch_size=size)
                seconds = time.perf_counter() - began
            outputs[name] = [o["output"] for o in outs]
            if load.share > args.max_other_load:
                dropped += 1
                continue
            kept[name].append(sum(o["new_tokens"] for o in outs) / seconds)
    return kept, outputs, dropped


def _adapted(model, adapter: str):
    """`model` (a copy) with the adapter on, unmerged."""
    import copy

    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    model = copy.deepcopy(model)
    if adapter != "random":
        return PeftModel.from_pretrained(model, adapter)
    torch.manual_seed(0)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets, init_lora_weights=False))
    with torch.no_grad():  # small, as a trained adapter's are: the model still answers sensibly
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.01)
    return peft_model


def compare_merged(args) -> None:
    import torch

    from tunesmith.models import load_model, load_tokenizer
    from tunesmith.models.generate import generate

    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    base = load_model(args.model, dtype=dtype)
    tok = load_tokenizer(args.model)
    models = {
        "unmerged": _adapted(base, args.adapter).eval(),
        "merged": _adapted(base, args.adapter).merge_and_unload(),
    }
    del base
    prompts = [
        [{"role": "user", "content": PROMPTS[i % len(PROMPTS)].format(WORDS[i % len(WORDS)])}]
        for i in range(args.examples)
    ]
    size = None if args.batch_size == "auto" else int(args.batch_size)
    for model in models.values():
        generate(model, tok, prompts[:2], max_new_tokens=4, batch_size=2)  # warm-up
    kept, outputs, dropped = alternate({name: (model, size) for name, model in models.items()}, tok, prompts, args)
    same = sum(a == b for a, b in zip(outputs["unmerged"], outputs["merged"]))
    result = {
        "device": str(model.device),
        "precision": args.precision,
        "examples": args.examples,
        "adapter": args.adapter,
        **{f"{name}_tok_s": round(statistics.median(v), 1) if v else None for name, v in kept.items()},
        "identical_outputs": f"{same}/{args.examples}",
        "rounds_dropped": dropped,
    }
    if kept["unmerged"] and kept["merged"]:
        result["ratio"] = round(result["merged_tok_s"] / result["unmerged_tok_s"], 2)
    report(result, args)


def compare_passes(args) -> None:
    """The evaluation's passes, each generated both ways in alternation (see the module docstring)."""
    from contextlib import nullcontext
    from unittest import mock

    from tunesmith.config import load_config
    from tunesmith.evaluate.latency import spread
    from tunesmith.evaluate.plan import plan_eval
    from tunesmith.evaluate.scoring import score
    from tunesmith.evaluate.stage import EvalRun
    from tunesmith.models import generate as gen
    from tunesmith.models import kvcache, prepack
    from tunesmith.paths import train_dir

    unmerged = ["eval.merge_adapter=false"] if args.rows else []
    cfg = load_config(args.passes, [f"train.precision={args.precision}", *unmerged])
    plan = plan_eval(cfg)
    run = EvalRun(cfg, plan, train_dir(cfg) / "model")
    e = run.e
    table = {}
    # each way: (drop finished rows, end settled answers, through the evaluation's forward context, prepacked,
    # the growing KV cache, prefilled in groups)
    if args.settled:
        ways = {"whole": (True, False, True, True, True, True), "settled": (True, True, True, True, True, True)}
    elif args.rows:
        ways = {"peft": (True, True, False, True, True, True), "rows": (True, True, True, True, True, True)}
    elif args.prepack:
        ways = {"plain": (True, True, True, False, True, True), "prepacked": (True, True, True, True, True, True)}
    elif args.kv:
        ways = {"concatenated": (True, True, True, True, False, True), "growing": (True, True, True, True, True, True)}
    elif args.prefill:
        ways = {"together": (True, True, True, True, True, False), "grouped": (True, True, True, True, True, True)}
    else:
        ways = {
            "generate": (False, False, True, True, True, True),
            "drop_finished": (True, False, True, True, True, True),
        }

    def packing(pack: bool):
        return nullcontext() if pack else mock.patch.object(prepack, "install", lambda model: 0)

    def caching(grow: bool):
        from transformers import DynamicCache

        plain = lambda model, capacity: DynamicCache(config=model.config)  # noqa: E731
        return nullcontext() if grow else mock.patch.object(kvcache, "growing_cache", plain)

    for name in ("fine_tuned",) if args.rows else ("base", "fine_tuned"):
        if name == "fine_tuned":
            run.apply_fine_tune()
        passes = {} if args.settled else {"test": (plan.passes[name], e.max_new_tokens, None)}
        for suite in plan.suites:
            passes[suite] = (plan.suite_prompts(suite), e.suite_max_new_tokens, suite)
        gen.generate(run.model, run.tokenizer, plan.passes[name][:2], max_new_tokens=4)  # warm-up
        for label, (prompts, max_new, suite) in passes.items():
            seconds: dict[str, list[float]] = {way: [] for way in ways}
            answers: dict[str, list[str]] = {}
            for _ in range(args.rounds):
                for way, (drops, ends, forward, pack, grow, grouped) in ways.items():
                    tests = plan.suite_settled(suite) if ends and suite else None
                    drop = mock.patch.object(gen, "drops_finished_rows", lambda m, drops=drops: drops)
                    whole = mock.patch.object(gen, "PREFILL_ROWS", 1 << 30)  # one group: the batch
                    with drop, packing(pack), caching(grow), nullcontext() if grouped else whole:
                        with OtherLoad() as load, run.forward() if forward else nullcontext():
                            began = time.perf_counter()
                            outs = gen.generate(
                                run.model, run.tokenizer, prompts, max_new_tokens=max_new, settled=tests
                            )
                            took = time.perf_counter() - began
                    answers[way] = [o["output"] for o in outs]
                    if ends:
                        settled = sum(bool(o.get("settled")) for o in outs)
                    if load.share <= args.max_other_load:
                        seconds[way].append(took)
            row = {way: round(statistics.median(v), 2) if v else None for way, v in seconds.items()} | {
                "identical_outputs": f"{sum(a == b for a, b in zip(*answers.values()))}/{len(prompts)}"
            }
            if args.settled:
                row["answers_settled"] = f"{settled}/{len(prompts)}"
            first, second = ways
            if row[first] and row[second]:
                row["ratio"] = round(row[first] / row[second], 2)
            if suite is None:
                for way, outs in answers.items():
                    summary, _ = score(
                        outs, plan.references, plan.schema, plan.fields, plan.kind, e.task_metric, False, plan.labels
                    )
                    row[f"task_metric_{way}"] = summary["task_metric"]["mean"]
            else:
                scored = {way: plan.score_suite(suite, outs) for way, outs in answers.items()}
                for way, results in scored.items():
                    row[f"pass_rate_{way}"] = round(sum(r.passed for r in results) / len(results), 4)
                row["identical_verdicts"] = (
                    f"{sum(a.passed == b.passed for a, b in zip(*scored.values()))}/{len(prompts)}"
                )
            table[f"{name} {label}"] = row
            print(f"{name} {label}: {json.dumps(row)}", flush=True)
        if args.prepack:  # the latency sample, each request alone, the two ways alternating request by request
            sample = spread(plan.passes[name], cfg.eval.latency_requests)
            seconds = {way: [] for way in ways}
            for _ in range(args.rounds):
                for prompt in sample:
                    for way, (*_, pack, _grow, _grouped) in ways.items():
                        with packing(pack), prepack.packed(run.model), run.forward():
                            took, _ = gen.time_request(
                                run.model, run.tokenizer, prompt, max_new_tokens=e.max_new_tokens
                            )
                        seconds[way].append(took)
            row = {way: round(statistics.mean(v) * len(sample) / args.rounds, 2) for way, v in seconds.items()}
            row |= {f"request_p50_{way}": round(statistics.median(v), 3) for way, v in seconds.items()}
            row["ratio"] = round(row["plain"] / row["prepacked"], 2)
            table[f"{name} latency, {len(sample)} requests alone"] = row
            print(f"{name} latency: {json.dumps(row)}", flush=True)
    total = {way: sum(r[way] for r in table.values() if r[way]) for way in ways}
    first, second = ways
    report(
        {
            "config": args.passes,
            "precision": args.precision,
            "device": str(run.model.device),
            "passes": table,
            **{f"seconds_{way}": round(t, 1) for way, t in total.items()},
            "ratio": round(total[first] / total[second], 2),
        },
        args,
    )


if __name__ == "__main__":
    main()
