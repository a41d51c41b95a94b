"""How much CPU other processes took while a step ran, from /proc/stat and /proc/self/stat.

The machine is shared: another job can take a core and slow torch 2-4x. Benchmarks
record this per step and drop steps where others used more than a threshold.
"""

from __future__ import annotations

import os
import subprocess
import time


def _total_busy() -> float:
    with open("/proc/stat") as fh:
        fields = [float(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle


def _busy(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/stat") as fh:
        parts = fh.read().rsplit(")", 1)[1].split()
    return float(parts[11]) + float(parts[12]) + float(parts[13]) + float(parts[14])  # utime stime cutime cstime


class OtherLoad:
    """Context manager: `.share` is the fraction of all cores used by other processes during the block.
    `ours` are the pids of helper processes of the benchmark (clients), counted as its own."""

    def __init__(self, ours: tuple[int, ...] = ()) -> None:
        self.ours = ours

    def _self_busy(self) -> float:
        return _busy() + sum(_busy(pid) for pid in self.ours)

    def __enter__(self) -> OtherLoad:
        self._t, self._all, self._me = time.perf_counter(), _total_busy(), self._self_busy()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self._t
        ticks = os.sysconf("SC_CLK_TCK")
        others = (_total_busy() - self._all) - (self._self_busy() - self._me)
        self.wall = wall
        self.share = max(0.0, others / ticks / (wall * (os.cpu_count() or 1))) if wall > 0 else 0.0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) for this process; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory since the last reset (VmHWM), in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_peak_rss(cmd: list[str]) -> tuple[float, float, float]:
    """Run `cmd` in its own process: (its peak RSS in bytes from the kernel's `wait4` rusage, the same
    figure as `/usr/bin/time -v`; wall seconds; other processes' CPU share meanwhile). Exits on failure."""
    with OtherLoad() as load:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read()[-3000:]}")
    return usage.ru_maxrss * 1024, load.wall, load.share


def cpu_flags() -> list[str]:
    """The CPU flags that decide the matrix speed (bf16, AMX, AVX512, AVX2), to print beside every figure."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return []
    wanted = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512f", "avx512_vnni", "avx2", "f16c")
    return [f for f in wanted if f in flags]


def run_arm(cmd: list[str], max_other_load: float) -> tuple[object, float, bool]:
    """One arm in a process of its own: (its last line of output, read as JSON; the CPU share other processes
    took meanwhile; whether that share is within `max_other_load`, so the round is kept)."""
    import json

    with OtherLoad() as load:
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1]), load.share, load.share <= max_other_load
