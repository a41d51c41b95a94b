"""The memory estimate of `tunesmith advise --config` against the peak RSS of real training runs.

For each model (a tiny 4-layer Llama with SmolLM2's vocabulary, and SmolLM2-135M) and each
method (LoRA, full fine-tuning) it prepares the bundled support-tickets data, asks the
estimator (`tunesmith.estimate.plan.plan_for_config`, the code behind the command) for the
peak, then runs `tunesmith train` on that config in a fresh process for one epoch (so the
heaviest micro-batch is met; evaluation and checkpoints included) and reads that process's
peak resident memory from the kernel (`wait4` rusage, the same figure as `/usr/bin/time -v`).
Other processes' CPU share during each run is recorded too (memory does not depend on it,
but the run time does).

Run:  python benchmarks/memory_estimate.py                  # all four, ~12 min here
      python benchmarks/memory_estimate.py --models tiny --methods lora
      python benchmarks/memory_estimate.py --models smollm2-135m-instruct --methods lora --micro-batch 2 --max-length 1024
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cpuload import run_peak_rss  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "support-tickets-json"
GIB = 1024**3


def project(root: Path, base_model: str, max_length: int) -> Path:
    """A copy of the support-tickets example training on `base_model`, its data prepared."""
    from tunesmith.config import load_config
    from tunesmith.data.stage import check_config, prepare_splits, split_outcome
    from tunesmith.models import load_tokenizer

    folder = root / Path(base_model).name
    shutil.copytree(EXAMPLE / "data", folder / "data")
    shutil.copy(EXAMPLE / "schema.json", folder / "schema.json")
    text = (
        (EXAMPLE / "tunesmith.yaml")
        .read_text()
        .replace("base_model: smollm2-135m-instruct", f"base_model: {base_model}")
    )
    text = text.replace("max_length: 512", f"max_length: {max_length}")
    (folder / "tunesmith.yaml").write_text(text)
    cfg = load_config(folder / "tunesmith.yaml")
    tokenizer = load_tokenizer(cfg.base_model)
    split_outcome(cfg, check_config(cfg, tokenizer=tokenizer, keep_records=True, show_progress=False))
    prepare_splits(cfg, tokenizer)
    return folder / "tunesmith.yaml"


def measured_peak(config: Path, overrides: list[str]) -> tuple[float, float, float]:
    """Peak RSS (bytes) of `tunesmith train` in its own process, its wall time and others' CPU share."""
    return run_peak_rss([str(Path(sys.executable).parent / "tunesmith"), "train", str(config), *overrides])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,smollm2-135m-instruct")
    ap.add_argument("--methods", default="lora,full")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--tolerance", type=float, default=0.25)
    ap.add_argument("--micro-batch", type=int, default=4, help="windows per forward pass (the example's 4)")
    ap.add_argument("--max-length", type=int, default=512, help="window length (the example's 512)")
    args = ap.parse_args()

    from tunesmith.config import load_config
    from tunesmith.estimate.advice import plan_for_config
    from tunesmith.estimate.memory import GB
    from tunesmith.models import load_tokenizer

    root = Path(tempfile.mkdtemp(prefix="tunesmith-mem-"))
    results = []
    for model in args.models.split(","):
        base = model
        if model == "tiny":  # 4 layers, 256 wide, SmolLM2's tokenizer and 49k vocabulary
            from tunesmith.models.tiny import make_tiny_model

            base = str(
                make_tiny_model(
                    root / "tiny", hidden_size=256, num_layers=4, tokenizer=load_tokenizer("smollm2-135m-instruct")
                )
            )
        config = project(root, base, args.max_length)
        for method in args.methods.split(","):
            adapter = "none" if method == "full" else "lora"
            overrides = [
                f"train.adapter={adapter}",
                f"train.num_epochs={args.epochs}",
                "train.eval_steps=7",
                "train.save_steps=7",
                f"train.micro_batch_size={args.micro_batch}",
            ]
            plan = plan_for_config(load_config(config, overrides))
            estimate = plan.here[method]
            peak, wall, others = measured_peak(config, overrides)
            error = estimate.total / peak - 1
            row = {
                "model": model,
                "method": method,
                "estimate_gib": round(estimate.total / GB, 2),
                "measured_peak_gib": round(peak / GIB, 2),
                "error": round(error, 3),
                "within_tolerance": abs(error) <= args.tolerance,
                "parts_gib": estimate.to_dict()["parts_gb"],
                "micro_batch": load_config(config, overrides).train.micro_batch_size,
                "seq_len": plan.data.seq_len,
                "keep_share": round(plan.data.keep_share, 3),
                "run_s": round(wall, 1),
                "others_cpu_share": round(others, 3),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    print("\nmodel                    method  estimate   measured peak   error")
    for r in results:
        mark = "ok" if r["within_tolerance"] else f"OUTSIDE ±{args.tolerance:.0%}"
        print(
            f"{r['model']:<24} {r['method']:<6} {r['estimate_gib']:>6.2f} GiB  {r['measured_peak_gib']:>6.2f} GiB    "
            f"{r['error']:+.1%}  {mark}"
        )
    shutil.rmtree(root, ignore_errors=True)
    if not all(r["within_tolerance"] for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
