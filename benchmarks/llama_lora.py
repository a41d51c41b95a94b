"""llama.cpp serving a version as a LoRA file over the base GGUF, against the version merged into its own GGUF.

One base GGUF with a small LoRA file per version is what multi-version serving on llama.cpp would need
(one merged GGUF per version is what `serve.engine: llama-cpp` writes today). This measures, on the
project's evaluated test prompts, answered one at a time greedily with the chat template from the
file: the share of identical answers, each arrangement's task metric and end-token stops, and
generated tokens per second, the two arrangements alternating round by round in one process.

Run after `make demo` (or on any project with a trained LoRA adapter and an evaluation):
      python benchmarks/llama_lora.py examples/support-tickets-json/tunesmith.yaml --quant q8_0 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", type=Path)
    ap.add_argument("--quant", choices=["f16", "q8_0"], default="q8_0", help="the base and merged GGUF weights")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    from tunesmith.config import load_config
    from tunesmith.export.agreement import evaluated_test, llama_cpp_answers
    from tunesmith.export.gguf_file import write_gguf
    from tunesmith.export.gguf_lora import write_lora_gguf
    from tunesmith.models.loading import resolve_model
    from tunesmith.models.merge import merge_adapter
    from tunesmith.paths import train_dir

    cfg = load_config(args.config)
    adapter = train_dir(cfg) / "model"
    prompts, _, max_new, _, task_metric = evaluated_test(cfg)
    work = Path(tempfile.mkdtemp(prefix="tunesmith-llama-lora-"))
    base_folder = Path(resolve_model(cfg.base_model))
    files = {
        "merged": write_gguf(
            merge_adapter(adapter, cfg.base_model, work / "merged", device="cpu"),
            work / f"merged-{args.quant}.gguf",
            quant=args.quant,
        ),
        "base": write_gguf(base_folder, work / f"base-{args.quant}.gguf", quant=args.quant),
        "lora": write_lora_gguf(adapter, json.loads((base_folder / "config.json").read_text()), work / "lora-f16.gguf"),
    }
    arrangements = {"merged GGUF": (files["merged"], None), "base GGUF + LoRA file": (files["base"], files["lora"])}
    speed: dict[str, list[float]] = {k: [] for k in arrangements}
    answers = {}
    for _ in range(args.rounds):
        for name, (gguf, lora) in arrangements.items():
            began = time.perf_counter()
            answers[name] = llama_cpp_answers(gguf, prompts, max_new, lora=lora)
            seconds = time.perf_counter() - began
            speed[name].append(sum(a["completion_tokens"] for a in answers[name]) / seconds)

    merged, lora = answers["merged GGUF"], answers["base GGUF + LoRA file"]
    result = {
        "examples": len(prompts),
        "quant": args.quant,
        "rounds": args.rounds,
        "identical": round(sum(a["output"] == b["output"] for a, b in zip(merged, lora)) / len(prompts), 4),
        "sizes_mb": {k: round(v.stat().st_size / 1e6, 1) for k, v in files.items()},
    }
    for name, outs in answers.items():
        result[name] = {
            "tokens_per_s": round(statistics.median(speed[name]), 1),
            "task_metric": round(task_metric([a["output"] for a in outs]), 4),
            "stopped": round(sum(a["stopped"] for a in outs) / len(outs), 4),
        }
    ratio = result["base GGUF + LoRA file"]["tokens_per_s"] / result["merged GGUF"]["tokens_per_s"]
    result["lora_vs_merged_speed"] = round(ratio, 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
