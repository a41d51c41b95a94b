"""What the machine can do: CUDA, bf16 (GPU or AVX512-BF16/AMX CPUs)."""

from __future__ import annotations

from pathlib import Path


def cpu_has_bf16() -> bool:
    """True on CPUs with native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def use_bf16(setting: str | bool) -> bool:
    """Resolve `train.bf16`: auto means bf16 where the hardware runs it natively."""
    if setting != "auto":
        return bool(setting)
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()
