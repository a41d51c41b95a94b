"""Evaluation right after training: in the process that trained, against a fresh child process (what
`tunesmith run` does, `evaluate/fresh.py`).

Each round starts one process per arm, alternating: it trains `--steps` steps into a scratch folder (as the
pipeline's training stage would, with the project's data), then evaluates the project's trained model from
a cold start (no evaluation cache) either in the same process (`same`) or through `run_eval_fresh`
(`fresh`: imports included). Rounds where other processes took more than --max-other-load of the CPU are
dropped; medians, the ratio, and whether both arms measured the same things (task metrics, suite pass
rates) are reported.

    .venv/bin/python benchmarks/eval_after_training.py DEMO/tunesmith.yaml [--precision bf16|fp32] [--rounds 2]

DEMO is a project that has been trained (e.g. the demo after `make demo`); it is copied (data and trained
model) into a scratch folder, so its own outputs are left as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cpuload import OtherLoad, cpu_flags  # noqa: E402


def arm(config: str, which: str, precision: str, steps: int) -> None:
    """One arm, in its own process: train a few steps, then evaluate; print the evaluation's JSON line."""
    from tunesmith.config import load_config
    from tunesmith.train.stage import run_train

    cfg = load_config(config, [f"train.precision={precision}"])
    scratch = load_config(
        config,
        [
            f"train.precision={precision}",
            f"train.max_steps={steps}",
            "output_dir=outputs_scratch",
            f"train.eval_steps={steps}",
            f"train.save_steps={steps}",
        ],
    )
    shutil.copytree(cfg.output_path / "data", scratch.output_path / "data", dirs_exist_ok=True)
    run_train(scratch)
    began = time.perf_counter()
    if which == "same":
        from tunesmith.evaluate.stage import run_eval

        result = run_eval(cfg)
    else:
        from tunesmith.evaluate.fresh import run_eval_fresh

        result = run_eval_fresh(cfg)
    seconds = time.perf_counter() - began
    verdicts = {
        "task_metric": {name: m.task_metric.mean for name, m in result.models.items()},
        "suites": {name: s.runs for name, s in result.suites.items()},
    }
    print("RESULT " + json.dumps({"seconds": seconds, "verdicts": verdicts}, default=str), flush=True)


def project_copy(config: Path, into: Path) -> Path:
    """The project's config, data files and trained model, without its evaluation or registry."""
    root = config.parent
    shutil.copytree(root, into, ignore=shutil.ignore_patterns("outputs", "mlruns", "mlartifacts", "mlflow.db"))
    out = root / "outputs"
    for part in ("data", "train"):
        shutil.copytree(out / part, into / "outputs" / part, ignore=shutil.ignore_patterns("checkpoints"))
    return into / config.name


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="training steps before the evaluation")
    parser.add_argument("--max-other-load", type=float, default=0.25)
    parser.add_argument("--arm", choices=["same", "fresh"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.arm:
        return arm(args.config, args.arm, args.precision, args.steps)

    env = {**os.environ, "TUNESMITH_EVAL_CACHE": "0"}
    seconds: dict[str, list[float]] = {"same": [], "fresh": []}
    verdicts: dict[str, object] = {}
    dropped = 0
    with tempfile.TemporaryDirectory(prefix="eval-after-training-") as tmp:
        config = project_copy(Path(args.config).resolve(), Path(tmp) / "project")
        for r in range(args.rounds):
            for which in ("fresh", "same"):
                cmd = [sys.executable, __file__, str(config), "--arm", which, "--precision", args.precision]
                with OtherLoad() as load:
                    done = subprocess.run(
                        [*cmd, "--steps", str(args.steps)], env=env, capture_output=True, text=True, cwd=tmp
                    )
                if done.returncode != 0:
                    raise SystemExit(f"{which} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
                line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
                result = json.loads(line.removeprefix("RESULT "))
                verdicts.setdefault(which, result["verdicts"])
                print(
                    f"round {r + 1} {which}: evaluation {result['seconds']:.1f} s, others {load.share:.0%} of the CPU",
                    flush=True,
                )
                if load.share > args.max_other_load:
                    dropped += 1
                    continue
                seconds[which].append(result["seconds"])
    medians = {k: statistics.median(v) if v else float("nan") for k, v in seconds.items()}
    summary = {
        "cpu_flags": cpu_flags(),
        "precision": args.precision,
        "steps_trained_first": args.steps,
        "seconds": seconds,
        "median_s": medians,
        "ratio_same_over_fresh": medians["same"] / medians["fresh"],
        "dropped_rounds": dropped,
        "same_verdicts": verdicts.get("same") == verdicts.get("fresh"),
        "verdicts": verdicts,
    }
    print(
        f"evaluation after {args.steps} training steps, {args.precision}, {' '.join(summary['cpu_flags'])}: "
        f"in the training process {medians['same']:.1f} s, in a fresh one {medians['fresh']:.1f} s "
        f"({summary['ratio_same_over_fresh']:.2f}x); same task metrics and suite results: {summary['same_verdicts']}"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
