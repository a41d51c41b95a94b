"""SFT on a tiny model: the loss falls, only trained parameters change, accumulation and resume are exact."""

from __future__ import annotations

import csv

import pytest
import torch
from transformers import TrainerCallback

from tests.train.helpers import arithmetic_rows, make_project
from tunesmith.config import load_config
from tunesmith.errors import TunesmithError
from tunesmith.train.adapters import compiled_in_training
from tunesmith.train.callbacks import StopAtStep
from tunesmith.train.stage import run_train


class Snapshot(TrainerCallback):
    """Parameters at the start and end of training, and which ones were trainable."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.after = {n: p.detach().clone() for n, p in model.named_parameters()}


def _curve(run_dir, column="loss"):
    with open(run_dir / "metrics.csv", newline="") as fh:
        return {int(r["step"]): float(r[column]) for r in csv.DictReader(fh) if r[column]}


@pytest.mark.parametrize("adapter", ["lora", "dora", "ia3", "prefix", "none"])
def test_loss_falls_and_only_trained_parameters_change(tmp_path, tiny_model_dir, adapter):
    lr = {"none": 3e-3}.get(adapter, 2e-2)
    config = make_project(
        tmp_path, tiny_model_dir, arithmetic_rows(), adapter=adapter, max_steps=20, learning_rate=lr, lora_dropout=0.0
    )
    snap = Snapshot()
    result = run_train(load_config(config), extra_callbacks=[snap])
    losses = _curve(result.run_dir)
    first, last = sum(list(losses.values())[:3]) / 3, sum(list(losses.values())[-3:]) / 3
    assert last < first - 0.05, losses
    changed = {n for n in snap.before if not torch.equal(snap.before[n], snap.after[n])}
    assert changed, "no parameter changed"
    assert changed <= snap.trainable, changed - snap.trainable
    if adapter == "none":
        assert len(changed) > 0.9 * len(snap.trainable)
    saved = {p.name for p in result.model_dir.iterdir()}
    assert ("adapter_model.safetensors" in saved) != (adapter == "none")
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in saved)
    assert {"tokenizer.json", "chat_template.jinja", "generation_config.json"} <= saved
    assert (result.run_dir / "loss.png").stat().st_size > 1000
    assert result.metadata["data"]["train"]["sha256"]


def test_gradient_checkpointing_gives_the_same_steps(tmp_path, tiny_model_dir):
    common = dict(max_steps=3, lora_dropout=0.0, eval_steps=100, save_steps=100)
    plain = run_train(load_config(make_project(tmp_path / "a", tiny_model_dir, arithmetic_rows(), **common)))
    saved = run_train(
        load_config(
            make_project(tmp_path / "b", tiny_model_dir, arithmetic_rows(), gradient_checkpointing=True, **common)
        )
    )
    a, b = _curve(plain.run_dir), _curve(saved.run_dir)
    assert a.keys() == b.keys()
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-4)


def test_accumulation_equals_a_large_batch(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    common = dict(max_steps=3, lora_dropout=0.0, learning_rate=1e-2, eval_steps=100, save_steps=100)
    small = make_project(
        tmp_path / "a", tiny_model_dir, arithmetic_rows(), micro_batch_size=1, gradient_accumulation_steps=8, **common
    )
    large = make_project(
        tmp_path / "b", tiny_model_dir, arithmetic_rows(), micro_batch_size=8, gradient_accumulation_steps=1, **common
    )
    a, b = run_train(load_config(small)), run_train(load_config(large))
    wa = load_file(a.model_dir / "adapter_model.safetensors")
    wb = load_file(b.model_dir / "adapter_model.safetensors")
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=2e-5, rtol=1e-3)
    la, lb = _curve(a.run_dir), _curve(b.run_dir)
    assert la.keys() == lb.keys()
    for step in la:
        assert la[step] == pytest.approx(lb[step], rel=1e-4)


def test_killed_run_resumes_to_the_same_curve(tmp_path, tiny_model_dir):
    common = dict(max_steps=8, save_steps=4, eval_steps=4, lora_dropout=0.1)
    whole = run_train(load_config(make_project(tmp_path / "whole", tiny_model_dir, arithmetic_rows(), **common)))
    config = load_config(make_project(tmp_path / "killed", tiny_model_dir, arithmetic_rows(), **common))
    stopped = run_train(config, extra_callbacks=[StopAtStep(6)])  # dies after step 6; checkpoint-4 is the last
    assert not stopped.metadata["completed"] and not stopped.model_dir.exists()
    resumed = run_train(config, resume=True)
    assert resumed.metadata["completed"] and resumed.metadata["steps"] == 8
    a, b = _curve(whole.run_dir), _curve(resumed.run_dir)
    assert a.keys() == b.keys() == set(range(1, 9))
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-4), (step, a[step], b[step])
    assert _curve(whole.run_dir, "eval_loss") == pytest.approx(_curve(resumed.run_dir, "eval_loss"), rel=1e-4)


def test_incomplete_checkpoint_is_not_trusted(tmp_path, tiny_model_dir):
    from tunesmith.train.stage import latest_complete_checkpoint

    config = load_config(make_project(tmp_path, tiny_model_dir, arithmetic_rows(), max_steps=8))
    run_train(config, extra_callbacks=[StopAtStep(5)])
    folder = config.output_path / "train" / "checkpoints"
    assert latest_complete_checkpoint(folder).name == "checkpoint-4"
    (folder / "checkpoint-6").mkdir()  # what a kill during a save leaves behind: no completion marker
    assert latest_complete_checkpoint(folder).name == "checkpoint-4"


def test_qlora_without_a_gpu_says_so_before_loading(tmp_path, tiny_model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    config = load_config(make_project(tmp_path, tiny_model_dir, arithmetic_rows(8), adapter="qlora"))
    with pytest.raises(TunesmithError, match="needs a CUDA GPU"):
        run_train(config)
    assert not (config.output_path / "train").exists()


def test_divergence_stops_training_with_an_alarm(tmp_path, tiny_model_dir):
    config = load_config(
        make_project(
            tmp_path,
            tiny_model_dir,
            arithmetic_rows(),
            adapter="none",
            learning_rate=1e4,
            max_steps=20,
            eval_steps=100,
            save_steps=100,
        )
    )
    result = run_train(config)
    # a far too high learning rate ends in NaN or in a collapsed model with zero gradients; both stop the run
    assert {"nan", "diverged"} & {a["kind"] for a in result.metadata["alarms"]}, result.metadata["alarms"]
    assert result.metadata["steps"] < 20 and result.metadata["stopped_early"]  # not training on NaN weights
    assert "training stopped" in (result.run_dir / "alarms.jsonl").read_text()


def test_early_stopping_still_saves_the_best_model(tmp_path, tiny_model_dir):
    config = load_config(
        make_project(
            tmp_path,
            tiny_model_dir,
            arithmetic_rows(),
            learning_rate=1.0,
            max_steps=40,
            eval_steps=2,
            save_steps=2,
            early_stopping_patience=1,
        )
    )
    result = run_train(config)
    assert result.metadata["stopped_early"] and result.model_dir.exists()
    assert result.metadata["best_checkpoint"]


def test_flat_loss_raises_an_alarm(tmp_path, tiny_model_dir):
    config = load_config(
        make_project(
            tmp_path,
            tiny_model_dir,
            arithmetic_rows(),
            learning_rate=1e-9,
            max_steps=10,
            eval_steps=100,
            save_steps=100,
        )
    )
    assert "flat" in {a["kind"] for a in run_train(config).metadata["alarms"]}


def test_lm_head_sees_each_rows_trained_positions_only(tiny_model_dir):
    """Two packed rows training different positions: the LM head gets only the 9 trained tokens (not
    the 9 shared positions x 2 rows), and the loss, its gradients and the accuracy counts equal a
    full-logits computation."""
    import torch
    import torch.nn.functional as F

    from tunesmith.models import load_model
    from tunesmith.train.sft import trained_positions_loss

    model = load_model(str(tiny_model_dir), dtype=torch.float32, device="cpu")
    torch.manual_seed(0)
    ids = torch.randint(3, 200, (2, 12))
    labels = torch.full_like(ids, -100)
    labels[0, 2:6], labels[1, 7:12] = ids[0, 2:6], ids[1, 7:12]
    batch = {"input_ids": ids, "labels": labels, "position_ids": torch.arange(12).repeat(2, 1)}
    seen = []
    spy = model.get_output_embeddings().register_forward_hook(lambda _m, args, out: seen.append(tuple(args[0].shape)))
    counts = {"correct": 0, "total": 0}
    loss, _ = trained_positions_loss(model, batch, accuracy=counts)
    spy.remove()
    assert seen == [(1, 9, model.config.hidden_size)] and counts["total"] == 9
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    logits = model(input_ids=ids, position_ids=batch["position_ids"]).logits[:, :-1].float()
    expected = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    for got, want in zip(grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    mask = labels[:, 1:] != -100
    assert counts["correct"] == int(((logits.argmax(-1) == labels[:, 1:]) & mask).sum())


def test_weighted_loss_is_the_weighted_token_mean(tiny_model_dir):
    """trained_positions_loss with loss_weights: ones give the plain loss; other weights give
    sum(weight * token loss) / trained tokens, checked against a full-logits computation."""
    import torch
    import torch.nn.functional as F

    from tunesmith.models import load_model
    from tunesmith.train.sft import trained_positions_loss

    model = load_model(str(tiny_model_dir), dtype=torch.float32, device="cpu")
    torch.manual_seed(0)
    ids = torch.randint(3, 200, (2, 12))
    labels = ids.clone()
    labels[:, :4] = -100
    batch = {"input_ids": ids, "labels": labels, "position_ids": torch.arange(12).repeat(2, 1)}
    plain, _ = trained_positions_loss(model, batch)
    ones, _ = trained_positions_loss(model, {**batch, "loss_weights": torch.ones(2, 12)})
    assert ones.item() == pytest.approx(plain.item(), rel=1e-6)
    weights = torch.rand(2, 12) * 3
    weighted, _ = trained_positions_loss(model, {**batch, "loss_weights": weights})
    with torch.no_grad():
        logits = model(input_ids=ids, position_ids=batch["position_ids"]).logits[:, :-1].float()
    token_loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="none"
    ).reshape(2, 11)
    mask = labels[:, 1:] != -100
    expected = (token_loss * weights[:, 1:] * mask).sum() / mask.sum()
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-5)


def test_decoder_layers_are_found_by_the_class_transformers_names(tiny_model_dir):
    """A model holding another ModuleList of like modules before its decoder layers (a vision tower, a
    stack of heads) still gets its decoder layers compiled: the class in `_no_split_modules` decides."""
    import torch

    from tunesmith.models import load_model
    from tunesmith.train.adapters import decoder_layers

    lm = load_model(str(tiny_model_dir), dtype=torch.float32)
    assert decoder_layers(lm) is lm.model.layers

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tower = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)])  # registered first
            self.lm = lm

    assert decoder_layers(Wrapped()) is lm.model.layers
    assert decoder_layers(Wrapped().tower[0]) is None


def test_compiled_layers_train_as_eager_ones(tmp_path, tiny_model_dir, monkeypatch):
    """train.compile: the decoder layers' training steps run compiled (shapes dynamic, the per-record
    attention left eager), validation runs eager, and the losses are eager's. In fp32 (the helper's), so
    any CPU runs it."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    monkeypatch.setattr(torch._dynamo.config, "disable", False)  # should TORCHDYNAMO_DISABLE be set here
    wrapped = []

    class Layers(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            wrapped.extend(
                m for m in model.modules() if getattr(getattr(m, "forward", None), "func", None) is compiled_in_training
            )

    common = dict(max_steps=4, lora_dropout=0.0, eval_steps=2, save_steps=2, attn_implementation="eager_varlen")
    eager = run_train(
        load_config(make_project(tmp_path / "a", tiny_model_dir, arithmetic_rows(), compile=False, **common))
    )
    counters.clear()
    compiled = run_train(
        load_config(make_project(tmp_path / "b", tiny_model_dir, arithmetic_rows(), compile=True, **common)),
        extra_callbacks=[Layers()],
    )
    assert len(wrapped) == 2  # the tiny model's two decoder layers, nothing else
    assert counters["stats"]["unique_graphs"] >= 1  # graphs were compiled (and run: the losses below)
    for column in ("loss", "eval_loss"):
        a, b = _curve(eager.run_dir, column), _curve(compiled.run_dir, column)
        assert a.keys() == b.keys() and a
        for step in a:
            assert a[step] == pytest.approx(b[step], rel=1e-3), (column, step)


def test_report_to_tensorboard_writes_the_training_loss_of_every_logged_step(tmp_path, tiny_model_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = make_project(
        tmp_path, tiny_model_dir, arithmetic_rows(), max_steps=6, lora_dropout=0.0, report_to=["tensorboard"]
    )
    result = run_train(load_config(config))
    folder = result.run_dir / "tensorboard"
    assert result.metadata["report_to"] == {"tensorboard": str(folder)}
    events = EventAccumulator(str(folder))
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("train/loss")}
    assert sorted(logged) == sorted(_curve(result.run_dir))  # every step metrics.csv logged, and no other
    for step, loss in _curve(result.run_dir).items():
        assert logged[step] == pytest.approx(loss, rel=1e-5)


def test_report_to_mlflow_logs_every_step_in_a_run_nested_under_tunesmiths(tmp_path, tiny_model_dir):
    import mlflow
    from mlflow.tracking import MlflowClient

    config = make_project(
        tmp_path, tiny_model_dir, arithmetic_rows(), max_steps=6, lora_dropout=0.0, report_to=["mlflow"], mlflow=True
    )
    result = run_train(load_config(config))
    parent = (result.run_dir / "mlflow_run_id").read_text().strip()
    child = (result.run_dir / "mlflow_trainer_run_id").read_text().strip()
    assert child != parent and mlflow.active_run() is None
    uri = f"sqlite:///{(tmp_path / 'out' / 'mlflow.db').resolve()}"
    assert result.metadata["report_to"] == {"mlflow": f"{uri} run {child}"}
    client = MlflowClient(uri)
    run = client.get_run(child)
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.params["learning_rate"] and run.data.params["max_steps"] == "6"  # TrainingArguments' fields
    logged = {m.step: m.value for m in client.get_metric_history(child, "loss")}
    assert sorted(logged) == sorted(_curve(result.run_dir))
    for step, loss in _curve(result.run_dir).items():
        assert logged[step] == pytest.approx(loss, rel=1e-5)
    own = {m.step for m in client.get_metric_history(parent, "loss")}  # tunesmith's own curve stays in its run
    assert own == set(logged)


def test_report_to_mlflow_without_tunesmiths_run_uses_the_projects_store(tmp_path, tiny_model_dir, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    config = make_project(
        tmp_path, tiny_model_dir, arithmetic_rows(), max_steps=2, lora_dropout=0.0, report_to=["mlflow"], mlflow=False
    )
    result = run_train(load_config(config))
    child = (result.run_dir / "mlflow_trainer_run_id").read_text().strip()
    run = MlflowClient(f"sqlite:///{(tmp_path / 'out' / 'mlflow.db').resolve()}").get_run(child)
    assert "mlflow.parentRunId" not in run.data.tags and run.info.status == "FINISHED"
    assert not (tmp_path / "mlruns").exists()  # not MLflow's own default folder
