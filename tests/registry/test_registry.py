"""The registry on a real MLflow SQLite store: add, refuse, promote, rollback with history, card, export."""

from __future__ import annotations

import json

import pytest

from tests.evaluate.test_eval_stage import _project
from tunesmith.config import load_config
from tunesmith.errors import TunesmithError
from tunesmith.evaluate.stage import run_eval
from tunesmith.export.formats import export_version
from tunesmith.registry import store
from tunesmith.train.stage import run_train

LENIENT = [
    "gate.task_metric_min=-1",
    "gate.format_compliance_min=-1",
    "gate.safety_pass_rate_min=-1",
    "gate.max_safety_regression=100",
    "gate.max_regression=100",
]


def registry_project(tmp_path_factory, tiny_model_dir):
    """A tiny project trained two steps and evaluated on four examples, with a registry name."""
    cfg = _project(tmp_path_factory.mktemp("registry"), tiny_model_dir, max_steps=2)
    raw = cfg.config_path.read_text() + "registry:\n  name: parity\n"
    cfg.config_path.write_text(raw)
    cfg = load_config(cfg.config_path)
    run_train(cfg)
    run_eval(cfg, limit=4)
    return cfg


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_dir):
    return registry_project(tmp_path_factory, tiny_model_dir)


def test_gate_failed_version_is_refused_then_marked_when_forced(project):
    with pytest.raises(TunesmithError, match="blocking gate"):
        store.add_version(project)
    forced = store.add_version(project, force=True)
    assert not forced.gates_passed and "task metric" in forced.failed_gates
    with pytest.raises(TunesmithError, match="failed its quality gates"):
        store.promote(project, str(forced.version), "production")
    info = store.show(project, str(forced.version))
    assert info["tags"]["gates"] == "failed" and info["tags"]["forced"] == "true"
    assert "Registered with --force" in info["card"]


def test_promote_rollback_and_history(project):
    lenient = load_config(project.config_path, LENIENT)
    first = store.add_version(lenient).version
    second = store.add_version(lenient).version
    store.promote(lenient, str(first), "production", reason="first release")
    store.promote(lenient, str(second), "production")
    store.promote(lenient, str(second), "canary")
    rows = {r["version"]: r for r in store.versions(lenient)}
    assert rows[second]["aliases"] == ["canary", "production"] and rows[first]["gates"] == "passed"
    event = store.rollback(lenient, reason="latency")
    assert (event["previous"], event["version"]) == (second, first)
    assert store.show(lenient, "production")["version"] == first
    with pytest.raises(TunesmithError, match="no earlier production version"):
        store.rollback(lenient)  # the only other holder was rolled back from
    moves = [(e["action"], e["alias"], e["previous"], e["version"]) for e in store.history(lenient)]
    assert moves[-4:] == [
        ("promote", "production", None, first),
        ("promote", "production", first, second),
        ("promote", "canary", None, second),
        ("rollback", "production", second, first),
    ]
    with pytest.raises(TunesmithError, match="alias 'prod' is not one of"):
        store.promote(lenient, str(first), "prod")
    with pytest.raises(TunesmithError, match="no version or alias '99'"):
        store.promote(lenient, "99", "production")


def test_lineage_and_model_card(project):
    lenient = load_config(project.config_path, LENIENT)
    added = store.add_version(lenient)
    info = store.show(lenient, str(added.version))
    split = json.loads((project.output_path / "data" / "split.json").read_text())
    assert info["tags"]["data.train.sha256"] == split["splits"]["train"]["sha256"]
    assert info["tags"]["base_model"] == project.base_model and info["tags"]["adapter"] == "lora"
    card = added.card.read_text()
    for section in (
        "## Intended use",
        "## Base model and licence",
        "## Training data",
        "## Training configuration",
        "## Evaluation",
        "## Quality gates",
        "## Safety and regression",
        "## Limitations",
    ):
        assert section in card
    assert split["splits"]["train"]["sha256"][:16] in card and "safety" in card


def test_export_loads_in_plain_transformers_and_peft(project, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    lenient = load_config(project.config_path, LENIENT)
    version = store.add_version(lenient).version
    out = tmp_path / "export"
    export_version(lenient, str(version), out, merged=True)
    assert (out / "adapter" / "adapter_model.safetensors").exists() and (out / "MODEL_CARD.md").exists()
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt"))
    ids = torch.tensor([[1, 2, 3, 4]])
    base = AutoModelForCausalLM.from_pretrained(project.base_model)
    adapted = PeftModel.from_pretrained(base, str(out / "adapter")).eval()
    merged = AutoModelForCausalLM.from_pretrained(str(out / "merged")).eval()
    with torch.no_grad():
        assert torch.allclose(adapted(ids).logits, merged(ids).logits, atol=1e-4)


def test_served_names_follow_the_registry_aliases(project):
    from tunesmith.serve.models import registry_adapters

    lenient = load_config(project.config_path, LENIENT)
    version = store.add_version(lenient).version
    store.promote(lenient, str(version), "canary")
    folders, targets = registry_adapters(lenient)
    assert targets["parity@canary"].adapter == f"v{version}" and f"parity@v{version}" in targets
    production = store.show(lenient, "production")["version"]
    assert targets["parity"].adapter == f"v{production}" == targets["parity@production"].adapter
    assert all((folder / "adapter_config.json").exists() for folder in folders.values())
