"""Opening a GGUF file in llama.cpp (llama-cpp-python), for the export check and the llama-cpp engine."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from tunesmith.export.gguf_file import ExportError

_OPENING = threading.Lock()


def amx_int8_built(llama_cpp: Any) -> bool:
    """Whether this llama.cpp was compiled with its AMX int8 kernels (a native build on an AMX CPU)."""
    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


def open_gguf(path: Path, *, n_ctx: int, threads: int | None = None, **options: Any) -> Any:
    """A `llama_cpp.Llama` over `path`. A llama.cpp built with AMX int8 kernels crashes (SIGSEGV in
    `ggml_backend_amx_mul_mat`, llama.cpp issue 20824, open) on quantized weights here, so there its
    extra buffer types (the AMX and repacked layouts) are turned off and the plain CPU kernels
    answer; llama-cpp-python has no argument for it, so its default model parameters are wrapped
    while the model loads. `make test` builds llama.cpp without AMX int8 and keeps the repacked kernels."""
    try:
        import llama_cpp
        import llama_cpp.llama as llama_module
    except ImportError:
        raise ExportError(
            "llama.cpp is not installed: pip install 'tunesmith[llamacpp]' (it compiles llama.cpp, a few minutes)"
        ) from None
    threads = threads or len(os.sched_getaffinity(0))
    if not amx_int8_built(llama_cpp):
        return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, verbose=False, **options)
    with _OPENING:
        defaults = llama_module.llama_cpp.llama_model_default_params

        def without_extra_buffers() -> Any:
            params = defaults()
            params.use_extra_bufts = False
            return params

        llama_module.llama_cpp.llama_model_default_params = without_extra_buffers
        try:
            return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, verbose=False, **options)
        finally:
            llama_module.llama_cpp.llama_model_default_params = defaults
