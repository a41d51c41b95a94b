"""How much a shared prefill could save: for each of the evaluation's prompt sets (the test split, its
few-shot prompts, each suite), the prompts' common token prefix, the time of one forward over all of them
(the prefill, left-padded to the longest: an upper bound on what generation spends on it), and the whole
generation as `tunesmith eval` runs it. A prefill shared across the batch can save at most the prefix's
share of the prefill; the bound is printed per set and in all.

    .venv/bin/python benchmarks/eval_prefill.py DEMO/tunesmith.yaml [--precision bf16|fp32]

DEMO is any project with a data stage done (its test split); only the base model runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cpuload import OtherLoad, cpu_flags  # noqa: E402


def common_prefix(rows: list[list[int]]) -> int:
    n = 0
    while all(len(r) > n and r[n] == rows[0][n] for r in rows):
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch

    from tunesmith.config import load_config
    from tunesmith.evaluate.plan import plan_eval
    from tunesmith.models import load_model, load_tokenizer
    from tunesmith.models.generate import generate

    cfg = load_config(args.config, [f"train.precision={args.precision}"])
    plan = plan_eval(cfg)
    model = load_model(cfg.base_model, dtype=torch.bfloat16 if args.precision == "bf16" else torch.float32)
    tok = load_tokenizer(cfg.base_model)
    tok.padding_side = "left"
    sets = {"test split": plan.passes["base"], "few-shot test split": plan.passes.get("few_shot", [])}
    sets.update({f"{s} suite": plan.suite_prompts(s) for s in plan.suites})
    generate(model, tok, sets["test split"][:2], max_new_tokens=4)  # warm-up
    rows, bound, total = [], 0.0, 0.0
    for name, prompts in sets.items():
        if not prompts:
            continue
        ids = [
            tok.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
            for p in prompts
        ]
        prefix, mean = common_prefix(ids), statistics.mean(len(x) for x in ids)
        batch = tok.pad([{"input_ids": x} for x in ids], padding=True, return_tensors="pt")
        times = []
        for _ in range(3):
            t = time.perf_counter()
            with torch.no_grad():
                model(**batch, logits_to_keep=1)
            times.append(time.perf_counter() - t)
        new = cfg.eval.max_new_tokens if "test" in name else cfg.eval.suite_max_new_tokens
        with OtherLoad() as load:
            generate(model, tok, prompts, max_new_tokens=new)
        prefill = statistics.median(times)
        saving = prefill * prefix / mean
        bound, total = bound + saving, total + load.wall
        rows.append(
            {
                "set": name,
                "prompts": len(ids),
                "mean_prompt_tokens": round(mean, 1),
                "common_prefix_tokens": prefix,
                "prefill_s": round(prefill, 2),
                "generation_s": round(load.wall, 2),
                "saving_bound_s": round(saving, 2),
                "others_share": round(load.share, 3),
            }
        )
        print(
            f"{name}: {len(ids)} prompts of {mean:.0f} tokens, {prefix} in common; prefill {prefill:.2f} s, "
            f"generation {load.wall:.2f} s (others {load.share:.0%}); a shared prefill saves at most {saving:.2f} s",
            flush=True,
        )
    print(
        f"in all ({args.precision}, {' '.join(cpu_flags())}): generation {total:.1f} s, a shared prefill saves at "
        f"most {bound:.1f} s ({bound / total:.0%})"
    )
    if args.out:
        Path(args.out).write_text(json.dumps({"cpu_flags": cpu_flags(), "precision": args.precision, "sets": rows}))


if __name__ == "__main__":
    main()
