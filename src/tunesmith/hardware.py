"""What this machine can do, for every stage: device, precision, memory available, matmul peak.

Precision is honest: bf16 only where the hardware runs it natively and fast (CPUs with AMX, CPUs
with AVX512-BF16 where it measures faster than fp32, CUDA GPUs of compute capability 8.0 or newer),
fp16 with loss scaling on older GPUs, fp32 otherwise. On a CPU without native bf16, torch emulates it
and it is slower than fp32.

Functions that need torch import it themselves, so `--help` and config checks stay light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from tunesmith.errors import TunesmithError

Device = Literal["cpu", "cuda", "mps"]
Precision = Literal["bf16", "fp16", "fp32"]
CGROUP_ROOT = Path("/sys/fs/cgroup")


def is_main_process() -> bool:
    """True in a single process, and in the first of a data-parallel launch (torchrun sets RANK)."""
    return int(os.environ.get("RANK", "0")) == 0


# Instruction sets below AVX512-BF16, as torch (ATEN_CPU_CAPABILITY) and oneDNN
# (ONEDNN_MAX_CPU_ISA) name them when told to use no more than that.
ATEN_WITHOUT_BF16 = {"default", "avx2"}
ONEDNN_WITHOUT_BF16 = {"sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2", "avx512_core", "avx512_core_vnni"}


def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_bf16() -> bool:
    """True on CPUs with native bf16 matrix instructions (AVX512-BF16 or AMX).

    torch's `ATEN_CPU_CAPABILITY=avx2` (or `default`) and oneDNN's `ONEDNN_MAX_CPU_ISA=AVX2` (or any
    set below AVX512_CORE_BF16) cap the instructions torch uses, so they cap this answer too: with
    them an AVX512 machine behaves as an AVX2-only one, fp32 wherever precision is `auto`.
    """
    if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() in ATEN_WITHOUT_BF16:
        return False
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").lower() in ONEDNN_WITHOUT_BF16:
        return False
    flags = _cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_amx() -> bool:
    """True where oneDNN may use AMX tiles for bf16: the CPU has them and `ONEDNN_MAX_CPU_ISA`, if set,
    does not cap below them."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").lower()
    if cap not in ("", "all", "default") and "amx" not in cap:
        return False
    return cpu_has_bf16() and "amx_bf16" in _cpu_flags()


# bf16 is taken on an AVX512-BF16 CPU without AMX only when its matmuls run at least this much faster
# than fp32's: a frozen base in bf16 also costs a little accuracy (+3.6% validation loss in
# benchmarks/train_throughput.py), so a tie goes to fp32.
BF16_MIN_SPEEDUP = 1.2


def cpu_bf16_speedup() -> float | None:
    """How much faster bf16 matmuls run than fp32's on this CPU, where that decides the precision: None
    where there is nothing to decide (no native bf16: fp32; AMX: bf16, 7-9x fp32 here).

    AVX512-BF16 without AMX differs by CPU: an AMD EPYC trained the demo 1.33x faster in bf16 than in
    fp32, a Xeon with AMX capped to AVX512_CORE_BF16 (oneDNN's path on such CPUs) 0.63x as fast, its
    matmuls 0.6x. So the answer is measured (about half a second) once per CPU (model name and flags),
    instruction caps (torch's, oneDNN's and MKL's, whose fp32 matmuls are half the ratio) and torch version,
    and kept in `$TUNESMITH_CACHE/hardware/`: every process, training's, the evaluation's and the server's,
    then resolves `auto` the same way."""
    if not cpu_has_bf16() or cpu_has_amx():
        return None
    import hashlib
    import json

    import torch

    from tunesmith.files import cache_root, write_json

    info: dict[str, str] = {}
    for line in _cpu_flags().splitlines():  # the first processor's lines
        name, _, value = line.partition(":")
        info.setdefault(name.strip(), value.strip())
    key = {
        "cpu": info.get("model name", ""),  # a VM may name every CPU alike: the flags tell them apart
        "flags": hashlib.sha256(info.get("flags", "").encode()).hexdigest()[:16],
        "torch": torch.__version__,
        "cap": [
            os.environ.get(name, "")
            for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
        ],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root() / "hardware" / f"bf16-speedup-{digest}.json"
    try:
        return float(json.loads(path.read_text())["speedup"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    speedup = _measure_bf16_speedup()
    try:
        write_json(path, {**key, "speedup": round(speedup, 3)})
    except OSError:  # a read-only cache: measured again next time
        pass
    return speedup


def _measure_bf16_speedup(rounds: int = 15) -> float:
    """The median over `rounds` of fp32's matmul time over bf16's, timed back to back (about half a
    second on a 2-core CPU). A (2048 x 1024) @ (1024 x 1024) product is a training step's shape; pairs and
    the median keep a burst of other load from deciding (a best-of-7 of each precision at 1024 x 1024
    once read 1.09x on a capped Xeon that measures 0.59-0.62x when quiet)."""
    import statistics
    import time

    import torch

    pairs = [
        (torch.randn(2048, 1024, dtype=d), torch.randn(1024, 1024, dtype=d)) for d in (torch.float32, torch.bfloat16)
    ]
    for a, b in pairs:
        a @ b  # oneDNN builds its kernel on the first call
    ratios = []
    for _ in range(rounds):
        seconds = []
        for a, b in pairs:
            start = time.perf_counter()
            a @ b
            seconds.append(time.perf_counter() - start)
        ratios.append(seconds[0] / seconds[1])
    return statistics.median(ratios)


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def has_mps() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def pick_device(setting: str = "auto") -> Device:
    """`device` resolved: auto is CUDA, else Apple's MPS, else the CPU; an explicit one must exist."""
    if setting == "cpu":
        return "cpu"
    if setting == "cuda" or (setting == "auto" and has_cuda()):
        if not has_cuda():
            raise TunesmithError(
                "device=cuda but torch sees no CUDA GPU here (torch.cuda.is_available() is False); "
                "use device=auto or device=cpu, or install a CUDA build of torch"
            )
        no_cudnn_attention()
        return "cuda"
    if setting == "mps" or (setting == "auto" and has_mps()):
        if not has_mps():
            raise TunesmithError("device=mps but torch sees no Apple MPS device here; use device=auto or device=cpu")
        return "mps"
    if setting not in ("auto", "cpu", "cuda", "mps"):
        raise TunesmithError(f"device={setting!r}: choose auto, cpu, cuda or mps")
    return "cpu"


def no_cudnn_attention() -> None:
    """Keep torch's SDPA off its cuDNN backend, for every stage that runs on a CUDA GPU.

    On an H200 (torch 2.11) SDPA chose cuDNN attention, which builds an execution graph for each new
    shape: generation, whose key/value length grows at every token, ran at 105 tokens/s (batch 16) the
    first time through and 580 once every length had its graph; eager attention ran at 640 from the
    start, and one served request took 190 ms a token (docs/benchmarks.md). Every stage here meets new
    lengths all the time (packed windows, prompts, the server's running batch); FlashAttention and the
    memory-efficient kernels, which SDPA picks instead, need no graph per shape."""
    import torch

    torch.backends.cuda.enable_cudnn_sdp(False)


def native_precision(device: str) -> Precision:
    """The fastest precision this device computes in natively (on a CPU with AVX512-BF16 but no AMX,
    bf16 only where it measures faster: `cpu_bf16_speedup`)."""
    if device == "cuda":
        import torch

        major, _minor = torch.cuda.get_device_capability()
        return "bf16" if major >= 8 else "fp16"
    if device == "mps":
        return "fp32"  # autocast on MPS is partial; fp32 is the safe default there
    if not cpu_has_bf16():
        return "fp32"
    speedup = cpu_bf16_speedup()
    return "bf16" if speedup is None or speedup >= BF16_MIN_SPEEDUP else "fp32"


def resolve_precision(setting: str, device: str, name: str = "train.precision") -> Precision:
    """A precision setting (`name`) resolved for `device`: auto is the native one; fp16 only on CUDA."""
    if setting == "auto":
        return native_precision(device)
    if setting == "fp16" and device != "cuda":
        raise TunesmithError(f"{name}=fp16 needs a CUDA GPU; this run is on {device}. Use {name}=auto, bf16 or fp32")
    return setting  # type: ignore[return-value]


def dtype_of(precision: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def precision_of(dtype: Any) -> str:
    """The precision name of a weights dtype: `dtype_of` the other way."""
    return {"bfloat16": "bf16", "float16": "fp16"}.get(str(dtype).removeprefix("torch."), "fp32")


def _cgroup_limit(root: Path = CGROUP_ROOT) -> int | None:
    """The memory limit of this process's cgroup (v2 `memory.max`, v1 `memory.limit_in_bytes`), if any."""
    for name in ("memory.max", "memory/memory.limit_in_bytes"):
        try:
            raw = (root / name).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 1 << 60:  # v1 writes a huge number for "no limit"
            return int(raw)
    return None


def _cgroup_usage(root: Path = CGROUP_ROOT) -> int:
    for name in ("memory.current", "memory/memory.usage_in_bytes"):
        try:
            return int((root / name).read_text().strip())
        except (OSError, ValueError):
            continue
    return 0


def available_memory(
    device: str = "cpu", *, cgroup_root: Path = CGROUP_ROOT, meminfo: Path = Path("/proc/meminfo")
) -> tuple[int, str]:
    """(bytes training may use now, where the figure comes from): free GPU memory on CUDA; on a CPU
    the kernel's MemAvailable, lowered to what the cgroup limit leaves (containers, Slurm jobs)."""
    if device == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info()
        return int(free), f"{torch.cuda.get_device_name()} ({free / 2**30:.1f} of {total / 2**30:.1f} GiB free)"
    try:
        info = dict(line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line)
        free = int(info["MemAvailable"].split()[0]) * 1024
        source = f"{free / 2**30:.1f} GiB RAM available"
    except (OSError, KeyError, ValueError):  # no /proc (macOS): half the physical memory, a cautious guess
        free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
        source = f"{free / 2**30:.1f} GiB (half the physical memory; free memory unknown here)"
    limit = _cgroup_limit(cgroup_root)
    if limit is not None and limit - _cgroup_usage(cgroup_root) < free:
        free = max(0, limit - _cgroup_usage(cgroup_root))
        source = f"{free / 2**30:.1f} GiB left under the cgroup limit of {limit / 2**30:.1f} GiB"
    return free, source


def matmul_peak_flops(precision: str, device: str = "cpu") -> float:
    """This device's matmul peak at `precision`, measured (about a second)."""
    import time

    import torch

    n = 1024 if device == "cpu" else 4096
    dtype = dtype_of(precision)
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    best = float("inf")
    for _ in range(5):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best
