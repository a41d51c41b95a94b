"""The project config: top-level settings and one typed section per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tunesmith.config.cost import CostConfig
from tunesmith.config.data import DataConfig
from tunesmith.config.evaluate import EvalConfig, GateConfig
from tunesmith.config.section import Section
from tunesmith.config.serve import RegistryConfig, ServeConfig
from tunesmith.config.train import TrainConfig


class ProjectConfig(Section):
    base_model: str = "smollm2-135m-instruct"
    """Hugging Face model id, local folder, or smollm2-135m-instruct (the packaged default)."""

    output_dir: str = "outputs"
    """Where every stage writes its artefacts (relative to the config file)."""

    seed: int = 42
    """Seed for splits, shuffling and initialisation."""

    trust_remote_code: bool = False
    """Allow model code from the model's folder or hub repo to run. Off unless you trust it."""

    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """Where every stage runs (training, evaluation, merge, serving, embeddings). auto: a CUDA GPU,
    else Apple's MPS, else the CPU."""

    data: DataConfig = Field(default_factory=DataConfig)
    """Data stage: inputs, checks, split and preparation."""

    train: TrainConfig = Field(default_factory=TrainConfig)
    """Training stage."""

    eval: EvalConfig = Field(default_factory=EvalConfig)
    """Evaluation stage."""

    gate: GateConfig = Field(default_factory=GateConfig)
    """Quality gates a candidate must pass."""

    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    """Model registry."""

    serve: ServeConfig = Field(default_factory=ServeConfig)
    """Serving."""

    cost: CostConfig = Field(default_factory=CostConfig)
    """Prices for cost per request and payback (illustrative defaults: set yours)."""

    config_path: Path | None = Field(None, exclude=True)
    """Where this config was loaded from (set by `load_config`, not written in YAML)."""

    @property
    def root(self) -> Path:
        """Folder relative paths are resolved against: the config file's folder."""
        return self.config_path.parent if self.config_path else Path.cwd()

    def resolve(self, path: str | Path) -> Path:
        """A path from the config, made absolute against the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.root / p)

    @property
    def output_path(self) -> Path:
        return self.resolve(self.output_dir)

    @property
    def served_precision(self) -> tuple[str, str]:
        """(setting, its name) the built-in engine's weights follow: `serve.precision`, or when that is auto
        the training's (`train.precision`), for `hardware.resolve_precision`."""
        if self.serve.precision != "auto":
            return self.serve.precision, "serve.precision"
        return self.train.precision, "train.precision"
