"""`tunesmith advise --config`: memory, time and cost of training this config on this data.

Tokens per epoch, window length and the share of positions the LM head runs at come from
the prepared data when `tunesmith data prepare` has run (exact), else from the records'
token lengths measured with the model's tokenizer (windows assumed full, LM head at every
position: an upper bound). Throughput here is the one measured by the last training run of
this config when there is one, else the FLOPs per token over this CPU's measured bf16 peak
at the utilisation measured by `benchmarks/train_throughput.py`; on GPUs the table's peak at
its `mfu`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import statistics
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.estimate.memory import GB, LLAMA_LINEARS, Arch, MemoryEstimate, Method, Setup, estimate_memory

CPU_MFU = 0.26  # measured: benchmarks/train_throughput.py, SmolLM2-135M LoRA, 26-27% of the bf16 peak


@dataclass
class DataStats:
    tokens_per_epoch: int
    sequences: int
    seq_len: int
    keep_share: float
    source: str


@dataclass
class Gpu:
    name: str
    memory_gb: float
    bf16_tflops: float
    usd_per_hour: float


@dataclass
class Machine:
    kind: str  # "cpu" or "cuda"
    memory_gb: float
    description: str


@dataclass
class Plan:
    model: str
    arch: Arch
    data: DataStats
    configured: Method
    epochs: float
    machine: Machine
    here: dict[str, MemoryEstimate | None]
    tokens_per_s: float | None
    throughput_source: str
    gpu_mfu: float
    gpu_rows: list[dict[str, Any]] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)

    @property
    def train_tokens(self) -> float:
        return self.data.tokens_per_epoch * self.epochs

    def hours_here(self) -> float | None:
        return self.train_tokens / self.tokens_per_s / 3600 if self.tokens_per_s else None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "params": self.arch.params, "configured": self.configured,
                "epochs": self.epochs, "data": self.data.__dict__, "machine": self.machine.__dict__,
                "here": {m: e.to_dict() if e else None for m, e in self.here.items()},
                "tokens_per_s_here": round(self.tokens_per_s, 1) if self.tokens_per_s else None,
                "throughput_source": self.throughput_source, "hours_here": self.hours_here(), "gpus": self.gpu_rows,
                "caveats": self.caveats}


def method_of(adapter: str) -> Method:
    """The memory class of `train.adapter` (DoRA/IA3/prefix train a few parameters, like LoRA)."""
    return "full" if adapter == "none" else "qlora" if adapter == "qlora" else "lora"


def model_arch(cfg: ProjectConfig) -> Arch:
    from tunesmith.models.loading import resolve_model

    name = resolve_model(cfg.base_model)
    if Path(name).exists():
        return Arch.from_folder(name)
    try:
        from huggingface_hub import hf_hub_download

        return Arch.from_folder(Path(hf_hub_download(name, "config.json")).parent)
    except Exception as exc:  # offline, unknown id, gated repo: all mean the same to the user
        raise TunesmithError(f"could not read the config of {cfg.base_model!r} ({type(exc).__name__}); "
                             "use a local model folder or check that the hub is reachable") from None


def data_stats(cfg: ProjectConfig) -> DataStats:
    from tunesmith.data.stage import data_dir

    prepared = data_dir(cfg) / "prepared" / "train.parquet"
    if prepared.exists():
        return _prepared_stats(prepared, cfg.train.micro_batch_size)
    return _record_stats(cfg)


def _prepared_stats(path: Path, micro_batch: int) -> DataStats:
    """Exact figures from the prepared windows: the longest micro-batch and the largest LM-head share."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["input_ids", "labels"])
    labels = table.column("labels").to_pylist()
    lengths = [len(x) for x in labels]
    if not lengths:
        raise TunesmithError(f"{path} holds no training windows; rerun `tunesmith data prepare`")
    longest = max(lengths)
    # Batches are drawn at random; the heaviest micro-batch puts the longest windows together.
    order = sorted(range(len(labels)), key=lambda i: -len(labels[i]))
    worst = 0.0
    for start in range(0, len(order), micro_batch):
        rows = order[start:start + micro_batch]
        width = max(lengths[i] for i in rows)
        trained = np.zeros(width, dtype=bool)
        for i in rows:
            row = np.asarray(labels[i][1:]) != -100
            trained[: row.size] |= row
        worst = max(worst, float(trained.mean()))
    return DataStats(sum(lengths), len(lengths), longest, worst, "prepared windows")


def _record_stats(cfg: ProjectConfig) -> DataStats:
    from tunesmith.data.check import valid_records
    from tunesmith.data.lengths import LengthCounter
    from tunesmith.data.stage import config_sources
    from tunesmith.models import load_tokenizer

    d = cfg.data
    counter = LengthCounter(load_tokenizer(cfg.base_model, trust_remote_code=cfg.trust_remote_code), d.max_length,
                            d.system_prompt)
    for i, record in enumerate(valid_records(config_sources(cfg), d.label_field)):
        counter.add(i, record)
    counter.flush()
    lengths = [n for n in counter.lengths if n <= d.max_length or d.truncation == "truncate"]
    if not lengths:
        raise TunesmithError("no valid records to estimate from; run `tunesmith data check` on the config")
    train_share = 1.0 - d.val_size - d.test_size
    tokens = int(sum(min(n, d.max_length) for n in lengths) * train_share)
    seq_len = d.max_length if d.packing else min(max(lengths), d.max_length)
    sequences = math.ceil(tokens / d.max_length) if d.packing else int(len(lengths) * train_share)
    hint = " (run `tunesmith data prepare` for exact figures)" if cfg.train.method == "sft" else ""
    return DataStats(tokens, sequences, seq_len, 1.0, "record lengths" + hint)


def setup_for(cfg: ProjectConfig, data: DataStats, *, device: str, bf16: bool) -> Setup:
    t = cfg.train
    targets = t.lora_target_modules
    attention = t.attn_implementation if t.attn_implementation != "auto" else ("sdpa" if device == "cuda" else "eager")
    return Setup(micro_batch=t.micro_batch_size, seq_len=data.seq_len, keep_share=data.keep_share, lora_r=t.lora_r,
                 lora_targets=LLAMA_LINEARS if targets == "all-linear" else tuple(targets),
                 lora_dropout=t.lora_dropout, bf16=bf16, device=device,  # type: ignore[arg-type]
                 attention="eager" if attention == "eager" else "sdpa",
                 gradient_checkpointing=t.gradient_checkpointing, gradient_accumulation=t.gradient_accumulation_steps)


def flops_per_token(arch: Arch, method: Method, trainable: int, seq_len: int, keep_share: float) -> float:
    """Matmul FLOPs per trained token: 2N forward; backward 4N for trained weights, 2N for frozen ones
    (input gradients only); attention scores and mixing 12·L·s·a·d (forward + backward)."""
    head = arch.vocab * arch.hidden * keep_share
    dense = arch.linear_params + head
    attention = 12 * arch.layers * seq_len * arch.heads * arch.head_dim
    if method == "full":
        return 6 * dense + attention
    return 4 * dense + 6 * trainable + attention


def load_gpus(path: str | Path | None) -> tuple[float, list[Gpu]]:
    text = Path(path).read_text() if path else resources.files("tunesmith.estimate").joinpath("gpus.yaml").read_text()
    where = str(path or "the packaged gpus.yaml")
    try:
        raw = yaml.safe_load(text) or {}
        return float(raw.get("mfu", 0.35)), [Gpu(**g) for g in raw.get("gpus", [])]
    except (TypeError, ValueError, yaml.YAMLError) as exc:
        raise TunesmithError(f"{where}: {exc}; each GPU needs name, memory_gb, bf16_tflops, usd_per_hour") from None


def this_machine() -> Machine:
    """This machine's training memory: the first GPU's when nvidia-smi reports one, else available RAM."""
    if shutil.which("nvidia-smi"):
        try:
            line = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                                  capture_output=True, text=True, timeout=10, check=True).stdout.splitlines()[0]
            name, mib = [x.strip() for x in line.split(",")]
            return Machine("cuda", float(mib) / 1024, name)
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
    available = int(info["MemAvailable"].split()[0]) / 1024**2
    return Machine("cpu", available, f"CPU, {os.cpu_count()} cores, {available:.1f} GB RAM available")


def measured_throughput(cfg: ProjectConfig, method: Method) -> float | None:
    """Median tokens/s of the last training run of this config, when it trained the same way."""
    from tunesmith.train.stage import train_dir

    folder = train_dir(cfg)
    meta = folder / "metadata.json"
    if not (folder / "metrics.csv").exists() or not meta.exists():
        return None
    if method_of(json.loads(meta.read_text()).get("adapter", "")) != method:
        return None
    with open(folder / "metrics.csv", newline="") as fh:
        values = [float(r["tokens_per_second"]) for r in csv.DictReader(fh) if r.get("tokens_per_second")]
    return statistics.median(values) if values else None


def cpu_bf16_peak_flops() -> float:
    """This CPU's bf16 matmul peak, measured (a second or two)."""
    import time

    import torch

    n = 1024
    a, b = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)
    a @ b
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def plan_for_config(cfg: ProjectConfig, *, gpus_path: str | Path | None = None,
                    tokens_per_s: float | None = None) -> Plan:
    from tunesmith.train.hardware import cpu_has_bf16

    arch = model_arch(cfg)
    data = data_stats(cfg)
    configured = method_of(cfg.train.adapter)
    t = cfg.train
    epochs = t.num_epochs
    if t.max_steps:
        epochs = t.max_steps * t.micro_batch_size * t.gradient_accumulation_steps / max(1, data.sequences)
    machine = this_machine()
    bf16 = True if machine.kind == "cuda" else (cpu_has_bf16() if t.bf16 == "auto" else bool(t.bf16))
    here_setup = setup_for(cfg, data, device=machine.kind, bf16=bf16)
    here: dict[str, MemoryEstimate | None] = {}
    for method in ("full", "lora", "qlora"):
        here[method] = None if method == "qlora" and machine.kind != "cuda" else estimate_memory(arch, method, here_setup)
    trainable = here[configured].trainable_params if here.get(configured) else 0
    fpt = flops_per_token(arch, configured, trainable, data.seq_len, data.keep_share)
    source = "given"
    if tokens_per_s is None:
        tokens_per_s = measured_throughput(cfg, configured)
        source = "measured by the last training run" if tokens_per_s else "unknown: pass --tokens-per-s"
    mfu, gpus = load_gpus(gpus_path)
    if tokens_per_s is None and machine.kind == "cuda":
        known = [g for g in gpus if g.name.split("-")[0].lower() in machine.description.lower()]
        if known:
            tokens_per_s = known[0].bf16_tflops * 1e12 * mfu / fpt
            source = f"estimated: {fpt / 1e9:.2f} GFLOP per token at {mfu:.0%} of the {known[0].name} peak"
    elif tokens_per_s is None:
        tokens_per_s = cpu_bf16_peak_flops() * CPU_MFU / fpt
        source = f"estimated: {fpt / 1e9:.2f} GFLOP per token at {CPU_MFU:.0%} of this CPU's measured bf16 peak"
    plan = Plan(cfg.base_model, arch, data, configured, epochs, machine, here, tokens_per_s, source, mfu)
    if cfg.train.method != "sft":
        plan.caveats.append(f"modelled as SFT: {cfg.train.method.upper()} trains on chosen and rejected sequences, "
                            "so expect about twice the activations and time (DPO adds a reference forward pass)")
    plan.caveats.append("one device: DDP keeps a full copy per GPU; FSDP/DeepSpeed sharding is not modelled")
    gpu_setup = setup_for(cfg, data, device="cuda", bf16=True)
    for gpu in gpus:
        for method in ("full", "lora", "qlora"):
            est = estimate_memory(arch, method, gpu_setup)
            f = flops_per_token(arch, method, est.trainable_params, data.seq_len, data.keep_share)
            hours = plan.train_tokens * f / (gpu.bf16_tflops * 1e12 * mfu) / 3600
            plan.gpu_rows.append({"gpu": gpu.name, "method": method, "memory_gb": round(est.total / GB, 2),
                                  "fits": est.total / GB <= gpu.memory_gb, "hours": hours,
                                  "usd": hours * gpu.usd_per_hour})
    return plan
