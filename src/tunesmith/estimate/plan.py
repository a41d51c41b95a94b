"""`tunesmith advise --config`: memory, time and cost of training this config on this data.

Tokens per epoch, window length and the share of positions the LM head runs at come from
the prepared data when `tunesmith data prepare` has run (exact), else from the records'
token lengths measured with the model's tokenizer (windows assumed full, LM head at every
position: an upper bound). Throughput here is the one measured by the last training run of
this config when it completed, else the FLOPs per token over this CPU's matmul peak (measured
at the precision training will use) at the utilisation measured by
`benchmarks/train_throughput.py`; on GPUs the table's peak at its `mfu`.
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
from tunesmith.estimate.memory import GB, LLAMA_LINEARS, Arch, MemoryEstimate, Method, Setup

CPU_MFU = 0.26  # measured: benchmarks/train_throughput.py, SmolLM2-135M LoRA, 26-27% of the bf16 peak


@dataclass
class DataStats:
    tokens_per_epoch: int
    sequences: int
    """Training sequences per epoch: packed windows, or records when packing is off."""
    seq_len: int
    keep_share: float
    source: str
    records: int = 0
    """Training records (conversations or preference pairs) per epoch."""
    window_reason: str | None = None
    """Why the window is as long as it is, when `data.max_length` is auto."""
    shared_prefix: bool = False
    """The prepared windows share prompt prefixes (`data.share_prefix`): only eager_varlen reads them."""


@dataclass
class Gpu:
    name: str
    memory_gb: float
    bf16_tflops: float
    usd_per_hour: float
    memory_tb_s: float | None = None  # memory bandwidth: prices a served request (estimate/cost.py)


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
    fit: dict[str, Any] = field(default_factory=dict)
    """What the pre-flight check of `tunesmith train` would choose here (`estimate.fit`)."""

    @property
    def train_tokens(self) -> float:
        return self.data.tokens_per_epoch * self.epochs

    def hours_here(self) -> float | None:
        return self.train_tokens / self.tokens_per_s / 3600 if self.tokens_per_s else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "params": self.arch.params,
            "configured": self.configured,
            "epochs": self.epochs,
            "data": self.data.__dict__,
            "machine": self.machine.__dict__,
            "here": {m: e.to_dict() if e else None for m, e in self.here.items()},
            "tokens_per_s_here": round(self.tokens_per_s, 1) if self.tokens_per_s else None,
            "throughput_source": self.throughput_source,
            "hours_here": self.hours_here(),
            "gpus": self.gpu_rows,
            "caveats": self.caveats,
            "fit": self.fit,
        }


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
        raise TunesmithError(
            f"could not read the config of {cfg.base_model!r} ({type(exc).__name__}); "
            "use a local model folder or check that the hub is reachable"
        ) from None


def data_stats(cfg: ProjectConfig) -> DataStats:
    from tunesmith.paths import data_dir

    prepared = data_dir(cfg) / "prepared" / "train.parquet"
    if prepared.exists() and cfg.train.method == "sft":
        micro = cfg.train.micro_batch_size
        stats = _prepared_stats(prepared, micro if isinstance(micro, int) else None)
        summary = data_dir(cfg) / "prepare.json"
        prepared_summary = json.loads(summary.read_text()) if summary.exists() else {}
        stats.shared_prefix = bool(prepared_summary.get("share_prefix"))
        if prepared_summary and cfg.data.max_length == "auto":
            stats.seq_len = max(stats.seq_len, int(prepared_summary.get("max_length", stats.seq_len)))
            stats.window_reason = prepared_summary.get("max_length_reason")
        return stats
    pairs = _pair_stats(cfg)
    return pairs if pairs is not None else _record_stats(cfg)


def _pair_stats(cfg: ProjectConfig) -> DataStats | None:
    """Preference training: the training pairs' lengths as the data stage measured them (`prepare.json`,
    data/pairs.pair_lengths), so the pre-flight check does not read the records again; None when the data
    stage has not run for this method and these length settings."""
    from tunesmith.paths import data_dir

    path = data_dir(cfg) / "prepare.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    pairs = summary.get("train")
    same = summary.get("method") == cfg.train.method and cfg.data.max_length in ("auto", summary.get("max_length"))
    if cfg.train.method == "sft" or not same or not isinstance(pairs, dict) or "pairs" not in pairs:
        return None
    if not pairs["pairs"]:
        raise TunesmithError("no training pairs fit data.max_length; run `tunesmith data check` on the config")
    reason = summary.get("max_length_reason") if cfg.data.max_length == "auto" else None
    return DataStats(
        pairs["tokens"], pairs["pairs"], pairs["longest"], 1.0, "the data stage's pair lengths", pairs["pairs"], reason
    )


def _prepared_stats(path: Path, micro_batch: int | None) -> DataStats:
    """Exact figures from the prepared windows: the longest micro-batch and the largest LM-head share
    (for `micro_batch`; None: for the largest micro-batch the pre-flight check may choose). The LM
    head sees each row's trained positions only (`train.sft.trained_positions_loss`): the share is a
    micro-batch's trained tokens over its rows x width."""
    import numpy as np
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["input_ids", "labels", "seq_lengths"])
    labels = table.column("labels").to_pylist()
    records = sum(len(x) for x in table.column("seq_lengths").to_pylist())
    lengths = [len(x) for x in labels]
    if not lengths:
        raise TunesmithError(f"{path} holds no training windows; rerun `tunesmith data prepare`")
    longest = max(lengths)
    micro_batch = micro_batch or max(1, 8192 // longest)
    # Batches are drawn at random; the heaviest micro-batch puts the longest windows together.
    order = sorted(range(len(labels)), key=lambda i: -len(labels[i]))
    worst = 0.0
    for start in range(0, len(order), micro_batch):
        rows = order[start : start + micro_batch]
        width = max(lengths[i] for i in rows)
        trained = sum(int((np.asarray(labels[i][1:]) != -100).sum()) for i in rows)
        worst = max(worst, trained / (len(rows) * width))
    return DataStats(sum(lengths), len(lengths), longest, worst, "prepared windows", records)


def _record_stats(cfg: ProjectConfig) -> DataStats:
    from tunesmith.data.check import valid_records
    from tunesmith.data.lengths import LengthCounter
    from tunesmith.data.stage import config_sources, system_prompt_for
    from tunesmith.data.window import choose_window
    from tunesmith.models import context_length, load_tokenizer

    d = cfg.data
    context = context_length(cfg.base_model, cfg.trust_remote_code)
    import itertools

    stream = valid_records(config_sources(cfg), d.label_field)
    head = list(itertools.islice(stream, 5000))  # enough to tell a label task (data.system_prompt: auto)
    counter = LengthCounter(
        load_tokenizer(cfg.base_model, trust_remote_code=cfg.trust_remote_code), context, system_prompt_for(cfg, head)
    )
    for i, record in enumerate(itertools.chain(head, stream)):
        counter.add(i, record)
    counter.flush()
    window = (
        choose_window(list(counter.lengths), context)
        if d.max_length == "auto"
        else {"max_length": d.max_length, "reason": None}
    )
    max_length = int(window["max_length"])
    lengths = [n for n in counter.lengths if n <= max_length or d.truncation == "truncate"]
    if not lengths:
        raise TunesmithError("no valid records to estimate from; run `tunesmith data check` on the config")
    train_share = 1.0 - d.val_size - d.test_size
    tokens = int(sum(min(n, max_length) for n in lengths) * train_share)
    seq_len = max_length if d.packing and cfg.train.method == "sft" else min(max(lengths), max_length)
    packed = d.packing and cfg.train.method == "sft"
    records = int(len(lengths) * train_share)
    sequences = math.ceil(tokens / max_length) if packed else records
    hint = " (run `tunesmith data prepare` for exact figures)" if cfg.train.method == "sft" else ""
    return DataStats(tokens, sequences, seq_len, 1.0, "record lengths" + hint, records, window["reason"])


def setup_for(cfg: ProjectConfig, data: DataStats, *, device: str, bf16: bool) -> Setup:
    t = cfg.train
    targets = t.lora_target_modules
    attention = (
        t.attn_implementation if t.attn_implementation != "auto" else ("sdpa" if device == "cuda" else "eager_varlen")
    )
    return Setup(
        micro_batch=t.micro_batch_size if isinstance(t.micro_batch_size, int) else 1,
        seq_len=data.seq_len,
        keep_share=data.keep_share,
        lora_r=t.lora_r,
        lora_targets=LLAMA_LINEARS if targets == "all-linear" else tuple(targets),
        lora_dropout=t.lora_dropout,
        bf16=bf16,
        device=device,  # type: ignore[arg-type]
        # eager_varlen keeps one record's scores at a time: at most a whole window's, as eager does
        attention="eager" if attention in ("eager", "eager_varlen") else "sdpa",
        gradient_checkpointing=t.gradient_checkpointing is True,
        gradient_accumulation=t.gradient_accumulation_steps if isinstance(t.gradient_accumulation_steps, int) else 1,
    )


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
            line = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.splitlines()[0]
            name, mib = [x.strip() for x in line.split(",")]
            return Machine("cuda", float(mib) / 1024, name)
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    from tunesmith.hardware import available_memory

    available, source = available_memory("cpu")
    return Machine("cpu", available / GB, f"CPU, {os.cpu_count()} cores, {source}")


def measured_throughput(cfg: ProjectConfig, method: Method) -> float | None:
    """Median tokens/s of the last completed training run of this config, when it trained the same way
    (a run killed before its first logged step has no throughput to offer, and none is taken as zero)."""
    folder = cfg.output_path / "train"  # the training stage's folder (`train.stage.train_dir`)
    meta = folder / "metadata.json"
    if not (folder / "metrics.csv").exists() or not meta.exists():
        return None
    metadata = json.loads(meta.read_text())
    if method_of(metadata.get("adapter", "")) != method or not metadata.get("completed", True):
        return None
    with open(folder / "metrics.csv", newline="") as fh:
        values = [float(r["tokens_per_second"]) for r in csv.DictReader(fh) if r.get("tokens_per_second")]
    values = [v for v in values if v > 0]
    return statistics.median(values) if values else None
