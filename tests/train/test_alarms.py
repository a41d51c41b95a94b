"""Alarms read the logs as a person watching the run would: overfitting, spikes, flat loss, NaN."""

from __future__ import annotations

from types import SimpleNamespace

from transformers import TrainerControl

from tunesmith.train.callbacks import Alarms


def _feed(tmp_path, logs: list[dict]) -> tuple[Alarms, TrainerControl]:
    alarms = Alarms(tmp_path / "alarms.jsonl")
    control = TrainerControl()
    args = SimpleNamespace(learning_rate=2e-4)
    for step, entry in enumerate(logs, start=1):
        state = SimpleNamespace(global_step=step, is_world_process_zero=True)
        alarms.on_log(args, state, control, logs=entry)
    return alarms, control


def test_overfitting_when_validation_rises_while_training_falls(tmp_path):
    logs = []
    for train, val in [(1.0, 0.90), (0.8, 0.95), (0.6, 1.00)]:
        logs += [{"loss": train, "grad_norm": 1.0}, {"eval_loss": val}]
    alarms, control = _feed(tmp_path, logs)
    assert [a["kind"] for a in alarms.raised] == ["overfitting"]
    assert not control.should_training_stop  # a warning: early stopping decides
    assert "overfitting" in (tmp_path / "alarms.jsonl").read_text()


def test_healthy_run_raises_nothing(tmp_path):
    logs = []
    for i in range(10):
        logs.append({"loss": 2.0 - 0.1 * i, "grad_norm": 1.0})
        logs.append({"eval_loss": 2.1 - 0.1 * i})
    assert _feed(tmp_path, logs)[0].raised == []


def test_spike_warns_and_nan_stops(tmp_path):
    alarms, control = _feed(tmp_path, [{"loss": 1.0}, {"loss": 1.1}, {"loss": 0.9}, {"loss": 9.0}])
    assert [a["kind"] for a in alarms.raised] == ["spike"] and not control.should_training_stop
    alarms, control = _feed(tmp_path, [{"loss": 1.0}, {"loss": float("nan")}])
    assert [a["kind"] for a in alarms.raised] == ["nan"] and control.should_training_stop
