"""tunesmith: fine-tune language models end to end, on one machine or many.

The Python entry points, imported on first use (so `import tunesmith` stays fast):

    import tunesmith
    result = tunesmith.run("tunesmith.yaml", overrides=["train.num_epochs=1"])
    result.passed, result.registered, [(g.name, g.measured, g.passed) for g in result.gates]

`run` is what `tunesmith run` runs (tunesmith.pipeline.run_pipeline); `load_config` reads a config with
dotted overrides; each stage has its own function, returning a typed result: `run_data` → DataResult,
`run_train` → TrainResult, `run_eval` → EvalResult (`read_eval` reads it back from disk), `check_gates` →
gate rows (`write_gates` → GateResult, `read_gates`), `add_version` → RegisterResult.
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
    "run_data": "tunesmith.data.stage",
    "DataResult": "tunesmith.data.stage",
    "check_and_split": "tunesmith.data.stage",
    "prepare_splits": "tunesmith.data.stage",
    "run_train": "tunesmith.train.stage",
    "TrainResult": "tunesmith.train.stage",
    "run_eval": "tunesmith.evaluate.stage",
    "EvalResult": "tunesmith.evaluate.result",
    "read_eval": "tunesmith.evaluate.result",
    "check_gates": "tunesmith.evaluate.gate",
    "GateResult": "tunesmith.evaluate.gate",
    "read_gates": "tunesmith.evaluate.gate",
    "add_version": "tunesmith.registry.store",
    "RegisterResult": "tunesmith.registry.store",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tunesmith' has no attribute {name!r}")
