"""A new user's first run: the topic-classification example with its data and training tuning removed.

The config keeps only what a new user would write (the data files, the label field and the split
sizes; the evaluation and gate sections stay as the example has them), so every data and training
setting is chosen by the pre-flight check (`tunesmith.estimate.fit`). The script prepares the data,
asks the pre-flight check for its settings and memory estimate, runs `tunesmith train` in its own
process and reads that process's peak resident memory from the kernel (`wait4` rusage, the same
figure as `/usr/bin/time -v`), then evaluates. With `--tuned` it also runs the example as shipped
(its hand-tuned recipe) in the same way, for the accuracy and time beside it.

Exits 1 when the measured peak is outside ±20% of the estimate.

Run:  python benchmarks/defaults_fit.py            # ~12 min here
      python benchmarks/defaults_fit.py --tuned    # and the tuned example, ~25 min
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from cpuload import run_peak_rss  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "topic-classification"
GIB = 1024**3


def untuned_config(example: dict) -> dict:
    """The example's config less its data and training tuning: data paths, label field, split sizes."""
    data = example["data"]
    kept = {
        "datasets": data["datasets"],
        "label_field": data["label_field"],
        "val_size": data["val_size"],
        "test_size": data["test_size"],
    }
    return {"base_model": example["base_model"], "data": kept, **{k: example[k] for k in ("eval", "gate", "registry")}}


def tunesmith(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "tunesmith"), *args]


def gate_summary(cfg, metrics: dict, meta: dict) -> dict:
    from tunesmith.evaluate.gate import check_gates
    from tunesmith.evaluate.result import EvalResult

    return {row.name: row.passed for row in check_gates(cfg, EvalResult.of(metrics), meta)}


def run_case(name: str, folder: Path) -> dict:
    from tunesmith.config import load_config
    from tunesmith.estimate.fit import fit_training

    config = folder / "tunesmith.yaml"
    for step in (("data", "split"), ("data", "prepare")):
        subprocess.run(tunesmith(*step, str(config)), check=True, stdout=subprocess.DEVNULL)
    fit = fit_training(load_config(config))
    peak, wall, others = run_peak_rss(tunesmith("train", str(config)))
    subprocess.run(tunesmith("eval", str(config)), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cfg = load_config(config)
    metrics = json.loads((cfg.output_path / "eval" / "metrics.json").read_text())
    meta = json.loads((cfg.output_path / "train" / "metadata.json").read_text())
    tuned = metrics["models"]["fine_tuned"]
    row = {
        "case": name,
        "estimate_gib": round(fit.estimate.total / GIB, 2),
        "measured_peak_gib": round(peak / GIB, 2),
        "error": round(fit.estimate.total / peak - 1, 3),
        "budget_gib": round(fit.budget_bytes / GIB, 1),
        "settings": {
            k: v
            for k, v in fit.to_dict().items()
            if k
            in (
                "max_length",
                "micro_batch_size",
                "gradient_accumulation_steps",
                "num_epochs",
                "attn_implementation",
                "gradient_checkpointing",
                "precision",
                "total_steps",
            )
        },
        "steps": meta["steps"],
        "stopped_early": meta["stopped_early"],
        "train_wall_s": round(wall, 1),
        "train_runtime_s": meta["train_runtime_s"],
        "others_cpu_share": round(others, 3),
        "accuracy": tuned["task_metric"]["mean"],
        "accuracy_ci95": tuned["task_metric"]["ci95"],
        "macro_f1": tuned.get("classification", {}).get("label", {}).get("macro_f1"),
        "eval_loss_best": meta["eval_loss_best"],
        "regression_change": metrics.get("suites", {}).get("regression", {}).get("relative_change"),
        "gates": gate_summary(cfg, metrics, meta),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tuned", action="store_true", help="also run the example as shipped, for comparison")
    ap.add_argument("--tolerance", type=float, default=0.20)
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tunesmith-defaults-"))
    example = yaml.safe_load((EXAMPLE / "tunesmith.yaml").read_text())
    cases = {"defaults": untuned_config(example)}
    if args.tuned:
        cases["tuned example"] = example
    rows = []
    for name, config in cases.items():
        folder = root / name.replace(" ", "-")
        shutil.copytree(EXAMPLE / "data", folder / "data")
        (folder / "tunesmith.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        rows.append(run_case(name, folder))
    print("\ncase            estimate  measured peak  error   accuracy  macro-F1  steps  train time")
    for r in rows:
        print(
            f"{r['case']:<15} {r['estimate_gib']:>5.2f} GiB  {r['measured_peak_gib']:>5.2f} GiB    {r['error']:+6.1%}  "
            f"{r['accuracy']:.3f}     {r['macro_f1'] or 0:.3f}    {r['steps']:>4}   {r['train_wall_s'] / 60:.1f} min"
        )
    print("settings chosen:", json.dumps(rows[0]["settings"]))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    shutil.rmtree(root, ignore_errors=True)
    if abs(rows[0]["error"]) > args.tolerance:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
