"""Merge gives the adapter's outputs as a standalone model; two processes train like one."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.train.helpers import arithmetic_rows, make_project
from tunesmith.config import load_config
from tunesmith.models import load_model
from tunesmith.models.merge import load_trained
from tunesmith.train.merge import merge_run
from tunesmith.train.stage import run_train


def test_merged_model_matches_the_adapter(tmp_path, tiny_model_dir):
    config = load_config(make_project(tmp_path, tiny_model_dir, arithmetic_rows(), max_steps=10, learning_rate=5e-2))
    result = run_train(config)
    merged_dir = merge_run(result.run_dir)
    assert (merged_dir / "model.safetensors").exists() and not (merged_dir / "adapter_config.json").exists()
    adapter = load_trained(result.model_dir, str(tiny_model_dir)).eval()
    merged = load_model(str(merged_dir)).eval()
    base = load_model(str(tiny_model_dir)).eval()
    ids = torch.tensor([[5, 17, 42, 99, 3, 7, 11]])
    with torch.no_grad():
        a, m, b = adapter(ids).logits, merged(ids).logits, base(ids).logits
    torch.testing.assert_close(m, a, atol=1e-5, rtol=1e-4)
    assert (a - b).abs().max() > 1e-3  # the adapter did change the outputs


def test_merge_refuses_what_it_cannot_merge(tmp_path, tiny_model_dir):
    from tunesmith.errors import TunesmithError

    config = load_config(make_project(tmp_path, tiny_model_dir, arithmetic_rows(16), adapter="prefix", max_steps=2))
    with pytest.raises(TunesmithError, match="cannot be merged"):
        merge_run(run_train(config).run_dir)


def _curve(path):
    with open(path, newline="") as fh:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(fh) if r["loss"]}


def _first_eval(path):
    with open(path, newline="") as fh:
        return next(r for r in csv.DictReader(fh) if r["eval_loss"])["eval_task_metric"]


def test_two_processes_agree_with_one(tmp_path, tiny_model_dir):
    common = dict(max_steps=4, lora_dropout=0.0, eval_steps=100, save_steps=100, micro_batch_size=1)
    one = load_config(
        make_project(tmp_path / "one", tiny_model_dir, arithmetic_rows(), gradient_accumulation_steps=4, **common)
    )
    single = run_train(one)
    two = make_project(tmp_path / "two", tiny_model_dir, arithmetic_rows(), gradient_accumulation_steps=2, **common)
    proc = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli", "train", str(two), "--nproc", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_two = load_config(two).output_path / "train"
    a, b = _curve(single.run_dir / "metrics.csv"), _curve(run_two / "metrics.csv")
    assert a.keys() == b.keys() == {1, 2, 3, 4}
    for step in a:
        assert a[step] == pytest.approx(b[step], rel=1e-4), (step, a[step], b[step])
    # the validation task metric before training, summed over both processes' shards (the untrained tiny
    # model gets no answer right, so this checks that the sum runs and agrees, not much more)
    first = [_first_eval(p / "metrics.csv") for p in (single.run_dir, run_two)]
    assert first[0] == first[1] != ""
    wa = load_file(single.model_dir / "adapter_model.safetensors")
    wb = load_file(run_two / "model" / "adapter_model.safetensors")
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-5, rtol=1e-3)
