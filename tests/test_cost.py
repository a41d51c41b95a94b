"""Cost per request and payback: the formulas (estimate/cost.py), and the evaluation's cost block built
from its own measurements."""

from __future__ import annotations

import pytest

from tunesmith.estimate.cost import gpu_seconds, payback_days, per_1k_hosted, per_1k_local
from tunesmith.estimate.plan import Gpu, load_gpus


def test_formulas():
    assert per_1k_local(0.10, 3.6) == pytest.approx(0.1)  # $0.10/h, 3.6 s a request: $0.0001 each
    assert per_1k_hosted(1000, 500, 0.00015, 0.0006) == pytest.approx(0.15 + 0.3)
    assert payback_days(10.0, 1.0, 0.5, 2000) == pytest.approx(10.0)  # saves $1 a day
    assert payback_days(10.0, 0.5, 1.0, 2000) is None  # costs more than the baseline: never pays back
    fast, slow = Gpu("fast", 80, 989, 2.7, memory_tb_s=3.35), Gpu("slow", 24, 121, 0.8, memory_tb_s=0.3)
    big = [gpu_seconds(g, 0.35, 8_000_000_000, 32, 500, 100) for g in (fast, slow)]
    assert big[0] < big[1]  # an 8B model: memory-bound, the faster memory wins
    small = gpu_seconds(fast, 0.35, 135_000_000, 30, 500, 100)
    assert small == pytest.approx(2 * 135e6 * 500 / (989e12 * 0.35) + 100 * 30 * 5e-5)  # the launch floor binds
    assert gpu_seconds(Gpu("x", 24, 100, 1.0), 0.35, 1, 1, 1, 1) is None  # no bandwidth, no estimate
    assert all(g.memory_tb_s for g in load_gpus(None)[1])  # the packaged table prices every GPU


def test_evaluation_cost_block_comes_from_its_measurements(tmp_path, tiny_model_dir):
    from tests.evaluate.test_eval_stage import _project
    from tunesmith.evaluate.stage import run_eval
    from tunesmith.train.stage import run_train

    cfg = _project(tmp_path, tiny_model_dir, max_steps=2)
    run_train(cfg)
    results = run_eval(cfg, limit=6)
    cost, models, c = results.cost, {n: m.values for n, m in results.models.items()}, cfg.cost
    rows = cost["per_1k_requests"]
    assert set(rows) == {"base", "few_shot", "fine_tuned"}
    for name in ("base", "fine_tuned"):  # this machine: the measured per-request latency × the price
        assert rows[name]["this_machine"] == round(
            per_1k_local(c.serving_usd_per_hour, models[name]["latency_mean_s"]), 4
        )
    assert "this_machine" not in rows["few_shot"]  # not timed one at a time
    timed = models["fine_tuned"]["latencies_s"]  # each request, for the interval of the cost
    assert len(timed) == models["fine_tuned"]["latency_requests"] > 1
    assert sum(timed) / len(timed) == pytest.approx(models["fine_tuned"]["latency_mean_s"], abs=2e-3)
    low, high = rows["fine_tuned"]["this_machine_ci"]
    assert low <= rows["fine_tuned"]["this_machine"] <= high
    few = models["few_shot"]
    assert rows["few_shot"]["hosted"] == round(
        per_1k_hosted(
            few["prompt_tokens_mean"],
            few["completion_tokens_mean"],
            c.baseline_usd_per_1k_input_tokens,
            c.baseline_usd_per_1k_output_tokens,
        ),
        4,
    )
    # the few-shot prompt carries its examples: more tokens in, so the baseline costs more per request
    assert few["prompt_tokens_mean"] > models["fine_tuned"]["prompt_tokens_mean"]
    assert set(rows["fine_tuned"]["gpus"]) == {g.name for g in load_gpus(None)[1]}
    roi = cost["roi"]
    assert roi["baseline_per_1k"] == rows["few_shot"]["hosted"]
    assert roi["setup_usd"] == pytest.approx(
        (roi["train_seconds"] + roi["eval_seconds"]) / 3600 * c.training_usd_per_hour, abs=1e-4
    )
    assert cost["illustrative_prices"] is True
    from tunesmith.cli.views import print_eval
    from tunesmith.console import out

    for summary in (True, False):  # `tunesmith eval` prints the payback; `tunesmith run`'s summary does instead
        width, out.width = out.width, 200
        try:
            with out.capture() as shown:
                print_eval(results, cfg.output_path / "eval", payback=summary)
        finally:
            out.width = width
        assert ("Payback at 10,000 requests a day" in shown.get()) is summary
    report = (cfg.output_path / "eval" / "report.md").read_text()
    assert "Cost per 1,000 requests" in report and "Payback at 10,000 requests a day" in report
    assert "| H100-80GB |" in report  # every GPU of the table, per model


def _block(tmp_path, latencies, **sections):
    from tunesmith.config import ProjectConfig
    from tunesmith.evaluate.cost import cost_block

    cfg = ProjectConfig(output_dir=str(tmp_path / "out"), **sections)
    models = {
        "few_shot": {"prompt_tokens_mean": 299.0, "completion_tokens_mean": 38.0},  # $0.0675 per 1K hosted
        "fine_tuned": {
            "prompt_tokens_mean": 105.0,
            "completion_tokens_mean": 34.0,
            "latency_mean_s": sum(latencies) / len(latencies),
            "latencies_s": latencies,
        },
    }
    timed = {"fp32": "torch.float32", "bf16": "torch.bfloat16"}[sections.get("train", {}).get("precision", "bf16")]
    return cost_block(cfg, models, params=135_000_000, layers=30, device="cpu", dtype=timed, eval_seconds=120.0)


def test_payback_carries_the_interval_of_the_measured_latency(tmp_path):
    from tunesmith.evaluate.cost import roi_lines

    # 8 requests of 1.5-3.5 s at $0.10/h: a mean of $0.066 per 1K, just under the baseline's $0.0675,
    # and an interval across it: the verdict the next run could reverse is called uncertain
    spread = _block(tmp_path, [1.5, 2.0, 2.5, 3.5, 2.2, 1.8, 3.0, 2.6])
    row, roi = spread["per_1k_requests"]["fine_tuned"], spread["roi"]
    low, high = row["this_machine_ci"]
    assert low < row["this_machine"] < high
    assert low < roi["baseline_per_1k"] < high
    assert roi["payback_days"] is not None  # at the mean it pays back ...
    assert roi["payback_days_ci"][0] >= 0 and roi["payback_days_ci"][1] is None  # ... and never at the top
    assert any(line.startswith("Uncertain:") for line in roi_lines(spread))

    tight = _block(tmp_path, [1.0, 1.05, 1.1, 0.95, 1.0, 1.02, 0.98, 1.04])  # far under the baseline
    fast, slow = tight["roi"]["payback_days_ci"]
    assert fast <= tight["roi"]["payback_days"] <= slow
    lines = roi_lines(tight)
    assert not any(line.startswith("Uncertain:") for line in lines)
    assert any(line.startswith("Within the 95% interval") for line in lines)

    one = _block(tmp_path, [2.0])  # a single request has no interval: the verdict stands alone
    assert "this_machine_ci" not in one["per_1k_requests"]["fine_tuned"] and "payback_days_ci" not in one["roi"]


def test_the_cost_says_when_the_server_runs_another_precision_than_was_timed(tmp_path):
    from tunesmith.evaluate.cost import roi_lines

    latencies = [1.0, 1.1, 0.9, 1.0]
    same = _block(tmp_path, latencies, train={"precision": "fp32"})
    assert same["precision"] == {"timed": "fp32", "served": "fp32"}  # serve.precision auto: the training's
    assert not any(line.startswith("Timed in") for line in roi_lines(same))
    other = _block(tmp_path, latencies, train={"precision": "bf16"}, serve={"precision": "fp32"})
    assert other["precision"] == {"timed": "bf16", "served": "fp32"}
    assert any(line.startswith("Timed in bf16, the evaluation's precision") for line in roi_lines(other))


def test_the_cost_names_the_precision_the_server_loads_where_fp32_would_crowd_memory(
    tmp_path, tiny_model_dir, monkeypatch
):
    import tunesmith.hardware as hw
    from tunesmith.models.loading import weight_count

    params = weight_count(str(tiny_model_dir))
    monkeypatch.setattr(hw, "cpu_has_bf16", lambda: True)  # AVX512-BF16 without AMX, fp32 measured faster
    monkeypatch.setattr(hw, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(hw, "cpu_bf16_speedup", lambda: 0.6)
    monkeypatch.setattr(hw, "available_memory", lambda device="cpu": (100 * 4 * params, "plenty"))
    roomy = _block(tmp_path, [1.0, 1.1], base_model=str(tiny_model_dir))
    assert roomy["precision"]["served"] == "fp32"
    monkeypatch.setattr(hw, "available_memory", lambda device="cpu": (int(1.5 * 4 * params), "1.5 fp32 copies"))
    crowded = _block(tmp_path, [1.0, 1.1], base_model=str(tiny_model_dir))
    assert crowded["precision"] == {"timed": "bf16", "served": "bf16"}  # as serve/models.load_served loads it
