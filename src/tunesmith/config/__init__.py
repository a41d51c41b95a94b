"""Project configuration: one typed model per stage, composed into `ProjectConfig`.

Each field is documented by the docstring under it; those docstrings feed both the
commented example project of `tunesmith init` and the error messages. Key names follow
what Axolotl, LLaMA-Factory and TRL users already know (`base_model`, `max_length`,
`train_on_prompt`, `micro_batch_size`, `lora_r`, ...).

This module must stay light: `tunesmith --help`, `init` and config checks import it,
and none of them may pay for importing torch or transformers.
"""

from tunesmith.config.cost import CostConfig
from tunesmith.config.data import FORMATS, SPLITS, DataConfig, DatasetSource
from tunesmith.config.evaluate import EvalConfig, GateConfig, JudgeConfig
from tunesmith.config.loading import commented_yaml, dump_config, load_config, parse_overrides, with_overrides
from tunesmith.config.project import ProjectConfig
from tunesmith.config.serve import RegistryConfig, RolloutConfig, ServeConfig, UpstreamConfig
from tunesmith.config.train import TrainConfig

__all__ = [
    "CostConfig",
    "FORMATS",
    "SPLITS",
    "DataConfig",
    "DatasetSource",
    "EvalConfig",
    "GateConfig",
    "JudgeConfig",
    "ProjectConfig",
    "RegistryConfig",
    "RolloutConfig",
    "ServeConfig",
    "TrainConfig",
    "UpstreamConfig",
    "commented_yaml",
    "dump_config",
    "load_config",
    "parse_overrides",
    "with_overrides",
]
