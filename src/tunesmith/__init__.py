"""tunesmith: fine-tune language models end to end, on one machine or many.

The Python entry points, imported on first use (so `import tunesmith` stays fast):

    import tunesmith
    result = tunesmith.run("tunesmith.yaml", overrides=["train.num_epochs=1"])
    result.passed, result.registered, [(g.name, g.measured, g.passed) for g in result.gates]

`run` is what `tunesmith run` runs (tunesmith.pipeline.run_pipeline); `load_config` reads a config with
dotted overrides; each stage has its own function (`run_train`, `run_eval`, `check_gates`, `add_version`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "run": "tunesmith.pipeline",
    "run_pipeline": "tunesmith.pipeline",
    "RunResult": "tunesmith.pipeline",
    "Event": "tunesmith.pipeline",
    "load": "tunesmith.pipeline",
    "load_config": "tunesmith.config",
    "ProjectConfig": "tunesmith.config",
    "check_and_split": "tunesmith.data.stage",
    "prepare_splits": "tunesmith.data.stage",
    "run_train": "tunesmith.train.stage",
    "run_eval": "tunesmith.evaluate.stage",
    "check_gates": "tunesmith.evaluate.gate",
    "add_version": "tunesmith.registry.store",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tunesmith' has no attribute {name!r}")
