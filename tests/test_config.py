"""Config: every shipped YAML loads, overrides apply, mistakes are explained with a suggestion."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO
from tunesmith.config import ProjectConfig, load_config, parse_overrides
from tunesmith.errors import ConfigError
from tunesmith.project import write_example_project

SHIPPED = sorted(REPO.glob("examples/*/tunesmith.yaml"))


def test_there_are_shipped_configs():
    assert SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parent.name)
def test_every_shipped_yaml_loads_and_its_files_exist(path):
    cfg = load_config(path)
    assert cfg.config_path == path.resolve()
    for source in cfg.data.datasets:
        assert cfg.resolve(source.path).exists()


def test_init_writes_a_loadable_commented_project(tmp_path):
    config_path, data_path = write_example_project(tmp_path / "proj")
    text = config_path.read_text()
    assert "# Longest sequence in tokens" in text and "lora_r: 16" in text
    cfg = load_config(config_path)
    assert cfg.data.label_field == "category" and cfg.data.datasets[0].path == "data/train.jsonl"
    with pytest.raises(Exception, match="already exists"):
        write_example_project(tmp_path / "proj")


def test_every_field_is_documented():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)

    walk(ProjectConfig)


def test_dotted_overrides(tmp_path):
    cfg = load_config(
        None,
        [
            "data.max_length=1024",
            "train.learning_rate=1e-4",
            "train.lora_target_modules=[q_proj]",
            "base_model=/models/x",
        ],
    )
    assert cfg.data.max_length == 1024 and cfg.train.learning_rate == 1e-4
    assert cfg.train.lora_target_modules == ["q_proj"] and cfg.base_model == "/models/x"
    assert parse_overrides(["a.b=true", "a.c=x"]) == {"a": {"b": True, "c": "x"}}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["data.max_length"])


def test_unknown_keys_get_a_suggestion_and_a_line(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("data:\n  max_lenght: 3\ntrain:\n  lora_rank: 8\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert f"{path}:2: unknown key 'data.max_lenght' — did you mean 'data.max_length'?" in msg
    assert f"{path}:4: unknown key 'train.lora_rank'" in msg


def test_bad_values_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="data.max_length"):
        load_config(None, ["data.max_length=-1"])
    with pytest.raises(ConfigError, match="leaves nothing to train on"):
        load_config(None, ["data.val_size=0.5", "data.test_size=0.5"])
    with pytest.raises(ConfigError, match="train.adapter"):
        load_config(None, ["train.adapter=lorax"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_config_command_does_not_import_torch():
    code = (
        "import sys; from typer.testing import CliRunner; from tunesmith.cli import app; "
        f"r = CliRunner().invoke(app, ['config', r'{SHIPPED[0]}']); assert r.exit_code == 0, r.output; "
        "bad = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]; print(bad); assert not bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_config_error_has_no_traceback(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("trian: {}\n")
    proc = subprocess.run([sys.executable, "-m", "tunesmith.cli", "config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "did you mean 'train'" in proc.stderr and "Traceback" not in proc.stderr
