"""`tunesmith registry export --format ...` on a registered tiny version: Hub card metadata the Hub
accepts, vLLM/TGI folders that peft loads with commands naming exactly those folders, GGUF with a
Modelfile, and errors that say what to do."""

from __future__ import annotations

import json
import shlex

import pytest
from typer.testing import CliRunner

from tests.registry.test_registry import LENIENT, registry_project
from tunesmith.cli import app
from tunesmith.config import load_config
from tunesmith.export.formats import FORMATS, export_version
from tunesmith.export.gguf_file import ExportError
from tunesmith.registry import store
from tunesmith.tracking import model_name


@pytest.fixture(scope="module")
def registered(tmp_path_factory, tiny_model_dir):
    cfg = registry_project(tmp_path_factory, tiny_model_dir)
    lenient = load_config(cfg.config_path, LENIENT)
    first = store.add_version(lenient).version
    second = store.add_version(lenient).version
    store.promote(lenient, str(first), "production")
    store.promote(lenient, str(second), "canary")
    return lenient, first, second


def test_hub_folder_card_metadata_is_valid_for_the_hub(registered, tmp_path):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard import metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    cfg, first, _ = registered
    written = export_version(cfg, str(first), tmp_path / "hf", fmt="hf")
    folder = tmp_path / "hf" / "merged"
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "README.md"} <= {
        p.name for p in folder.iterdir()
    }
    meta = metadata_load(folder / "README.md")
    assert meta["library_name"] == "transformers" and "tunesmith" in meta["tags"]
    name, results = model_index_to_eval_results(meta["model-index"])
    assert name == f"{model_name(cfg)}-v{first}"
    tags = store.show(cfg, str(first))["tags"]
    assert {r.metric_type: r.metric_value for r in results}["format_compliance"] == round(
        float(tags["format_compliance"]), 4
    )
    card = ModelCard.load(folder / "README.md")
    assert card.data.to_dict()["model-index"] == meta["model-index"]  # the card round-trips through the Hub's parser
    assert written["card"] == str(folder / "README.md")


def test_adapter_variant_loads_with_peft(registered, tmp_path, tiny_model_dir):
    from huggingface_hub.repocard import metadata_load
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg, first, _ = registered
    export_version(cfg, str(first), tmp_path / "a", fmt="hf-adapter")
    folder = tmp_path / "a" / "adapter"
    assert metadata_load(folder / "README.md")["library_name"] == "peft"
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)), str(folder))


@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_engine_exports_serve_every_aliased_version_with_peft_loadable_folders(registered, tmp_path, engine):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg, first, second = registered
    out = tmp_path / engine
    written = export_version(cfg, "aliases", out, fmt=engine)
    folders = sorted(p.relative_to(out).as_posix() for p in (out / "adapters").iterdir())
    assert folders == [f"adapters/v{first}", f"adapters/v{second}"]
    # the base is copied beside them (a local base exists on no other machine) and the adapters load on it
    for folder in folders:
        PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(out / "base")), str(out / folder))
    cmd = shlex.split(written["command"].replace('"$PWD":/data', "PWD:/data"))
    name = model_name(cfg)
    if engine == "vllm":
        assert cmd[:3] == ["vllm", "serve", "base"] and "--enable-lora" in cmd
        modules = cmd[cmd.index("--lora-modules") + 1 :]
        assert modules == [f"ft:{name}:v{first}=adapters/v{first}", f"ft:{name}:v{second}=adapters/v{second}"]
    else:
        assert cmd[cmd.index("--model-id") + 1] == "/data/base"
        assert cmd[cmd.index("--lora-adapters") + 1].split(",") == [
            f"ft:{name}:v{first}=/data/adapters/v{first}",
            f"ft:{name}:v{second}=/data/adapters/v{second}",
        ]
    assert written["command"] in (out / "serve.sh").read_text()


def test_gguf_export_through_the_command_line(registered, tmp_path):
    cfg, first, _ = registered
    result = CliRunner().invoke(
        app,
        [
            "registry",
            "export",
            str(cfg.config_path),
            "production",
            "--out",
            str(tmp_path / "g"),
            "--format",
            "gguf",
            "--quant",
            "q8_0",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    files = {p.name for p in (tmp_path / "g").iterdir()}
    gguf_name = f"{model_name(cfg)}-v{first}-q8_0.gguf"
    assert {gguf_name, "Modelfile", "MODEL_CARD.md"} <= files
    assert not [f for f in files if f.startswith(".")]  # no staging left behind
    assert (tmp_path / "g" / "Modelfile").read_text().startswith(f"FROM ./{gguf_name}\n")
    assert gguf_name in (tmp_path / "g" / "MODEL_CARD.md").read_text()


def test_help_lists_every_format_and_errors_say_what_to_do(registered, tmp_path):
    result = CliRunner().invoke(app, ["registry", "export", "--help"], env={"COLUMNS": "200"})
    assert all(f in result.output for f in FORMATS)
    cfg, first, _ = registered
    with pytest.raises(ExportError, match="choose one of"):
        export_version(cfg, str(first), tmp_path / "x", fmt="onnx")
    with pytest.raises(ExportError, match="registry list"):
        export_version(cfg, "99", tmp_path / "x", fmt="vllm")
    adapter = tmp_path / "prefix"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "PREFIX_TUNING"}))
    from tunesmith.export.formats import merged_folder

    with pytest.raises(ExportError, match="cannot be merged.*train.adapter: lora"):
        merged_folder(cfg, {"version": 3, "tags": {}}, adapter, tmp_path / "m")
