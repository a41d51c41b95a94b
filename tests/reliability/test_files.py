"""Folder swaps and downloads that a kill cannot leave half-done (issue 17)."""

from __future__ import annotations

import os

import pytest

from tunesmith.files import replace_dir

pytestmark = pytest.mark.reliability


def _folder(path, text):
    path.mkdir(parents=True)
    (path / "weights").write_text(text)
    return path


def test_replace_dir_never_leaves_neither_folder(tmp_path, monkeypatch):
    target = _folder(tmp_path / "model", "old")
    replace_dir(_folder(tmp_path / ".new", "new"), target)
    assert (target / "weights").read_text() == "new" and not (tmp_path / ".model.old").exists()

    # killed between the two renames: the old folder is aside, the target missing
    real = os.replace
    calls = []

    def dies_on_second(a, b):
        calls.append((a, b))
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands in for the kill
        return real(a, b)

    monkeypatch.setattr(os, "replace", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        replace_dir(_folder(tmp_path / ".newer", "newer"), target)
    monkeypatch.setattr(os, "replace", real)
    assert not target.exists() and (tmp_path / ".model.old" / "weights").read_text() == "new"
    replace_dir(_folder(tmp_path / ".newest", "newest"), target)  # the next swap recovers first
    assert (target / "weights").read_text() == "newest" and not (tmp_path / ".model.old").exists()


def test_a_broken_adapter_download_is_never_reused(tmp_path, monkeypatch):
    """A download that dies midway leaves no folder that looks complete; the next try downloads again."""
    import mlflow

    from tunesmith.config import ProjectConfig
    from tunesmith.errors import TunesmithError
    from tunesmith.serve import models

    cfg = ProjectConfig(output_dir=str(tmp_path / "out"))

    class Version:
        name, version, source, tags = "m", "4", "models:/m/4", {}

    def partial(artifact_uri, dst_path):
        (tmp_path / "partial").mkdir(exist_ok=True)
        os.makedirs(os.path.join(dst_path, "model"), exist_ok=True)  # the folder, but not its files
        raise ConnectionError("connection reset")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", partial)
    with pytest.raises(ConnectionError):
        models._download(cfg, Version())
    assert not (tmp_path / "out" / "serve" / "adapters" / "v4").exists()

    def complete(artifact_uri, dst_path):
        os.makedirs(os.path.join(dst_path, "model"), exist_ok=True)
        with open(os.path.join(dst_path, "model", "adapter_config.json"), "w") as fh:
            fh.write('{"peft_type": "LORA"}')

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", complete)
    folder = models._download(cfg, Version())
    assert (folder / "adapter_config.json").exists()

    def empty(artifact_uri, dst_path):
        os.makedirs(os.path.join(dst_path, "model"), exist_ok=True)

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", empty)
    Version.version = "5"
    with pytest.raises(TunesmithError, match="no model/adapter_config.json"):
        models._download(cfg, Version())


def test_one_checkpoint_kept_still_leaves_a_complete_one_during_rotation(tmp_path):
    """transformers deletes old checkpoints before tunesmith marks the new one complete: with
    save_total_limit 1 a kill right then leaves nothing to resume from, so at least 2 are kept."""
    from tunesmith.config import ProjectConfig
    from tunesmith.train.arguments import training_kwargs

    cfg = ProjectConfig(
        train={
            "save_total_limit": 1,
            "num_epochs": 1,
            "micro_batch_size": 1,
            "gradient_accumulation_steps": 1,
            "warmup_ratio": 0.0,
            "gradient_checkpointing": False,
            "compile": False,
            "attn_implementation": "eager",
            "precision": "fp32",
            "eval_steps": 5,
            "save_steps": 5,
        },
        data={"max_length": 64},
    )
    kwargs = training_kwargs(cfg, tmp_path, precision="fp32", device="cpu", has_eval=False)
    assert kwargs["save_total_limit"] == 2
