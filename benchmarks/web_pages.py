"""Server time of each web page with 100 runs and 50 registry versions (issue 19: under 300 ms each).

A tiny model is trained and evaluated once, registered 50 times; 100 fine-tuning jobs with a
metrics.csv of 200 logged steps each are added to the jobs database. Each page is requested
`--repeat` times in-process (starlette's TestClient: no network, so the time is the server's), and
the median is reported; pages are requested in turn, round after round, so load on a shared machine
falls on all of them alike.

    .venv/bin/python benchmarks/web_pages.py [--repeat 7] [--out bench_web.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' project helpers

LIMIT_MS = 300.0


def build(root: Path):
    import yaml

    from tests.evaluate.test_eval_stage import _project
    from tunesmith.config import load_config
    from tunesmith.evaluate.stage import run_eval
    from tunesmith.models.tiny import make_tiny_model
    from tunesmith.registry import store
    from tunesmith.train.stage import run_train

    model = make_tiny_model(root / "tiny")
    cfg = _project(root / "project", model, max_steps=4)
    raw = yaml.safe_load(cfg.config_path.read_text())
    raw["registry"] = {"name": "bench"}
    raw["serve"] = {"jobs": {"worker": False}, "alias_poll_s": 0}
    cfg.config_path.write_text(yaml.safe_dump(raw))
    lenient = [
        "gate.task_metric_min=-1",
        "gate.format_compliance_min=-1",
        "eval.regression_suite=null",
        "eval.safety_suite=null",
    ]
    cfg = load_config(cfg.config_path, lenient)
    run_train(cfg)
    run_eval(cfg, limit=20)
    began = time.time()
    for _ in range(50):
        store.add_version(cfg)
    print(f"50 versions registered in {time.time() - began:.0f} s", flush=True)
    store.promote(cfg, "1", "production")
    return cfg


def add_jobs(cfg, n: int = 100) -> None:
    from tunesmith.jobs.api import jobs_root
    from tunesmith.jobs.store import JobStore

    jobs = JobStore(jobs_root(cfg))
    for i in range(n):
        job = jobs.add_job(
            "org-local",
            {
                "model": "tiny",
                "training_file": "file-x",
                "seed": i,
                "method": {"type": "supervised"},
                "hyperparameters": {"n_epochs": 3},
            },
        )
        train = Path(job["folder"]) / "outputs" / "train"
        train.mkdir(parents=True)
        with open(train / "metrics.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["step", "epoch", "loss", "eval_loss", "learning_rate"])
            for step in range(1, 201):
                writer.writerow([step, step / 200, 2.0 / step**0.5, 2.1 / step**0.5 if step % 10 == 0 else "", 1e-4])
        (train / "metadata.json").write_text(
            json.dumps(
                {
                    "steps": 200,
                    "max_steps": 200,
                    "completed": True,
                    "eval_loss_best": 0.15,
                    "method": "sft",
                    "adapter": "lora",
                }
            )
        )
        jobs.move(job["id"], ("validating_files",), "succeeded")
    jobs.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from tunesmith.cli.serve import with_extras
    from tunesmith.serve.stage import build_app, close_app

    with tempfile.TemporaryDirectory() as tmp:
        cfg = build(Path(tmp))
        add_jobs(cfg)
        app = build_app(cfg)
        stop = with_extras(app, cfg)
        job_id = app.state.server.jobs.all_jobs()[-1]["id"]
        pages = {
            "runs": "/ui/runs",
            "run (project)": "/ui/runs/project",
            "run (a job)": f"/ui/runs/{job_id}",
            "evaluation": "/ui/eval",
            "evaluation, filtered": "/ui/eval?filter=wrong",
            "diff v1 vs v50": "/ui/eval/diff?a=v1&b=v50",
            "registry": "/ui/registry",
            "model card": "/ui/registry/50",
            "rollout": "/ui/rollout",
            "human evaluation": "/ui/human",
            "playground": "/ui/playground",
        }
        times: dict[str, list[float]] = {name: [] for name in pages}
        with TestClient(app) as client:
            for path in pages.values():  # warm-up: first downloads (diff) and template compilation
                assert client.get(path).status_code == 200, path
            for _ in range(args.repeat):
                for name, path in pages.items():
                    began = time.perf_counter()
                    answer = client.get(path)
                    times[name].append((time.perf_counter() - began) * 1000)
                    assert answer.status_code == 200, path
        stop()
        close_app(app)
    rows = [
        {
            "page": name,
            "median_ms": round(statistics.median(t), 1),
            "max_ms": round(max(t), 1),
            "under_limit": statistics.median(t) < LIMIT_MS,
        }
        for name, t in times.items()
    ]
    print(f"{'page':24} {'median ms':>10} {'max ms':>8}  (limit {LIMIT_MS:.0f} ms; 100 runs, 50 versions)")
    for r in rows:
        print(f"{r['page']:24} {r['median_ms']:>10} {r['max_ms']:>8}  {'ok' if r['under_limit'] else 'OVER'}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    sys.exit(0 if all(r["under_limit"] for r in rows) else 1)


if __name__ == "__main__":
    main()
