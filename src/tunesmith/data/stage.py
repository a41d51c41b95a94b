"""The data stage end to end: check → split → prepare, artefacts under `<output_dir>/data/`.

check.json  report.md  lengths.png  rejects.jsonl      what `data check` found
train.jsonl  validation.jsonl  test.jsonl  split.json  canonical records per split
prepared/{train,validation}.parquet  prepare.json       tokenised, masked, packed (SFT); pair lengths (DPO: pairs.py)
config.yaml                                             the resolved config
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig, dump_config
from tunesmith.data.check import CheckResult, Source, check_sources
from tunesmith.data.records import Record, record_from_dict
from tunesmith.data.report import markdown_report
from tunesmith.data.split import SPLIT_NAMES, split_keys
from tunesmith.errors import ConfigError, DataError
from tunesmith.files import sha256_file, write_atomic, write_json
from tunesmith.paths import data_dir


def config_sources(cfg: ProjectConfig) -> list[Source]:
    if not cfg.data.datasets:
        where = cfg.config_path or "the config"
        raise DataError(
            f"{where}: data.datasets is empty; list your files, e.g.\n"
            "  data:\n    datasets:\n      - path: data/train.jsonl"
        )
    return [Source(cfg.resolve(d.path), d.format, d.split, d.task) for d in cfg.data.datasets]


@dataclass
class CheckOutcome:
    result: CheckResult
    out_dir: Path
    records: dict[int, Record] = field(default_factory=dict)
    splits: dict[int, str] = field(default_factory=dict)

    @property
    def report(self) -> dict[str, Any]:
        return self.result.to_dict()


def run_check(
    sources: list[Source],
    out_dir: Path,
    *,
    tokenizer: Any = None,
    max_length: int = 2048,
    system_prompt: str | None = None,
    label_field: str | None = None,
    near_dup_threshold: float = 0.8,
    redact_pii: bool = False,
    keep_records: bool = False,
    show_progress: bool = True,
) -> CheckOutcome:
    """Check `sources`, writing check.json, report.md, lengths.png and rejects.jsonl into `out_dir`."""
    from tunesmith.console import bytes_progress
    from tunesmith.data.lengths import LengthCounter
    from tunesmith.data.readers import expand_inputs

    counter = LengthCounter(tokenizer, max_length, system_prompt) if tokenizer is not None else None
    outcome = CheckOutcome(CheckResult(), out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    redacted_file = open(out_dir / "redacted.jsonl", "w", encoding="utf-8") if redact_pii else None

    def on_valid(key: int, record: Record, split: str) -> None:
        if keep_records:
            outcome.records[key] = record
            outcome.splits[key] = split
        if redacted_file:
            redacted_file.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")

    files = expand_inputs([s.path for s in sources])
    total = sum(f.stat().st_size for f in files if f.is_file())
    with bytes_progress() as progress:
        task = progress.add_task("Checking records", total=total or None, visible=show_progress)
        try:
            outcome.result = check_sources(
                sources,
                rejects_path=out_dir / "rejects.jsonl",
                label_field=label_field,
                length_counter=counter,
                near_dup_threshold=near_dup_threshold,
                redact_pii=redact_pii,
                on_valid=on_valid,
                on_bytes=lambda n: progress.advance(task, n),
            )
        finally:
            if redacted_file:
                redacted_file.close()
    histogram = counter.histogram(out_dir / "lengths.png") if counter is not None else None
    report = outcome.report
    write_json(out_dir / "check.json", report)
    write_atomic(out_dir / "report.md", markdown_report(report, histogram.name if histogram else None))
    return outcome


def check_config(
    cfg: ProjectConfig, *, tokenizer: Any = None, keep_records: bool = False, show_progress: bool = True
) -> CheckOutcome:
    """`run_check` for the data of a project config."""
    d = cfg.data
    max_length = d.max_length
    if max_length == "auto":  # the window is chosen later, from the split; here report what no window can hold
        from tunesmith.models import context_length

        max_length = context_length(cfg.base_model, cfg.trust_remote_code) if tokenizer is not None else 2048
    return run_check(
        config_sources(cfg),
        data_dir(cfg),
        tokenizer=tokenizer,
        max_length=max_length,
        system_prompt=d.system_prompt,
        label_field=d.label_field,
        near_dup_threshold=d.near_dup_threshold,
        redact_pii=d.redact_pii,
        keep_records=keep_records,
        show_progress=show_progress,
    )


def split_outcome(cfg: ProjectConfig, outcome: CheckOutcome) -> dict[str, Any]:
    """Split checked records (explicit splits kept, the pool shared out), write the split files."""
    d = cfg.data
    result = outcome.result
    exact_later = {k for k, kind, _ in result.duplicates if kind == "exact"} if d.dedup == "exact" else set()
    linked = [(k, e) for k, _kind, earlier in result.duplicates for e in earlier]
    keys = [k for k in sorted(outcome.records) if k not in exact_later]
    given = {s for s in outcome.splits.values() if s in ("validation", "test")}
    # records marked train stay in training when unmarked records exist to carve validation/test from;
    # when every record is marked train, validation and test are carved out of them
    auto = [k for k in keys if outcome.splits[k] == "auto"]
    marked = [k for k in keys if outcome.splits[k] == "train"]
    pool, fixed_train = (auto, marked) if auto else (marked, [])
    # stratified by task and label, so every task keeps its share of validation and test
    labels = {k: f"{outcome.records[k].meta.get('task', '')}|{outcome.records[k].meta.get('label', '')}" for k in pool}
    assigned = split_keys(
        pool,
        val_size=0.0 if "validation" in given else d.val_size,
        test_size=0.0 if "test" in given else d.test_size,
        seed=cfg.seed,
        labels=labels,
        linked=linked,
    )
    for k in keys:
        if outcome.splits[k] in given:
            assigned[outcome.splits[k]].append(k)
    assigned["train"].extend(fixed_train)
    where = {k: name for name, ks in assigned.items() for k in ks}
    leaks = sum(1 for a, b in linked if a in where and b in where and where[a] != where[b])
    out_dir = outcome.out_dir
    summary: dict[str, Any] = {
        "seed": cfg.seed,
        "val_size": d.val_size,
        "test_size": d.test_size,
        "dropped_exact_duplicates": len(exact_later),
        "leaking_pairs": leaks,
        "splits": {},
    }
    for name in SPLIT_NAMES:
        ks = sorted(assigned[name])
        lines = "".join(json.dumps(outcome.records[k].to_dict(), ensure_ascii=False) + "\n" for k in ks)
        path = write_atomic(out_dir / f"{name}.jsonl", lines)
        summary["splits"][name] = {
            "records": len(ks),
            "file": path.name,
            "sha256": sha256_file(path),
            "labels": dict(
                Counter(outcome.records[k].meta.get("label") for k in ks if "label" in outcome.records[k].meta)
            ),
        }
        tasks = Counter(outcome.records[k].meta["task"] for k in ks if "task" in outcome.records[k].meta)
        if tasks:
            summary["splits"][name]["tasks"] = dict(tasks)
    write_json(out_dir / "split.json", summary)
    return summary


def load_split(cfg: ProjectConfig, name: str) -> list[Record]:
    """Records of one split written by `split_outcome`."""
    path = data_dir(cfg) / f"{name}.jsonl"
    if not path.exists():
        raise DataError(f"{path} not found; run `tunesmith data split {cfg.config_path or 'tunesmith.yaml'}` first")
    with open(path, encoding="utf-8") as fh:
        return [record_from_dict(json.loads(line)) for line in fh if line.strip()]


def choose_max_length(cfg: ProjectConfig, tokenizer: Any, system: str | None = None) -> dict[str, Any]:
    """`data.max_length` as set, or (auto) the window chosen from the training split's token lengths."""
    if cfg.data.max_length != "auto":
        return {"max_length": cfg.data.max_length, "reason": "set in the config"}
    from tunesmith.data.window import choose_window

    lengths, context = train_lengths(cfg, tokenizer, system)
    return choose_window(lengths, context)


def train_lengths(cfg: ProjectConfig, tokenizer: Any, system: str | None) -> tuple[list[int], int]:
    """Each training record's length in tokens (with the chat template), and the model's context."""
    from tunesmith.data.lengths import LengthCounter
    from tunesmith.models import context_length

    context = context_length(cfg.base_model, cfg.trust_remote_code)
    counter = LengthCounter(tokenizer, context, system)
    for i, record in enumerate(load_split(cfg, "train")):
        counter.add(i, record)
    counter.flush()
    return list(counter.lengths), context


def prepare_splits(cfg: ProjectConfig, tokenizer: Any) -> dict[str, Any]:
    """Tokenise, mask and pack train and validation into `prepared/*.parquet`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tunesmith.data.prepare import prepare_examples, sft_records

    d = cfg.data
    out = data_dir(cfg) / "prepared"
    out.mkdir(parents=True, exist_ok=True)
    system = system_prompt_for(cfg)
    window = choose_max_length(cfg, tokenizer, system)
    max_length = window["max_length"]
    share, share_reason = share_prefix_choice(cfg)
    summary: dict[str, Any] = {
        "method": "sft",
        "max_length": max_length,
        "max_length_reason": window["reason"],
        "packing": d.packing,
        "share_prefix": share,
        "share_prefix_reason": share_reason,
        "train_on_prompt": d.train_on_prompt,
        "system_prompt": system,
    }
    for name in ("train", "validation"):
        records = sft_records(load_split(cfg, name))
        if name == "train" and len({r.meta.get("task") for r in records}) > 1:
            from tunesmith.data.tasks import sample_tasks

            records, summary["tasks"] = sample_tasks(records, d.task_sampling, d.task_temperature, cfg.seed)
        replay: list[Record] = []
        shares = None
        if name == "train" and d.replay is not None and cfg.train.method == "sft" and records:
            replay, summary["replay"] = _replay(cfg, tokenizer, records, max_length, system)
            shares = _loss_shares(summary["replay"]) if d.replay.balance_loss else None
        examples, stats = prepare_examples(
            records,
            tokenizer,
            max_length=max_length,
            train_on_prompt=d.train_on_prompt,
            system_prompt=system,
            truncation=d.truncation,
            packing=d.packing,
            share_prefix=share,
            replay=replay,
            loss_shares=shares,
        )
        columns = [
            ("input_ids", pa.list_(pa.int32())),
            ("labels", pa.list_(pa.int32())),
            ("position_ids", pa.list_(pa.int32())),
            ("seq_lengths", pa.list_(pa.int32())),
        ]
        if stats.loss_weights:
            columns.append(("loss_weights", pa.list_(pa.float32())))
            summary["replay"]["loss_weights"] = stats.loss_weights
        table = pa.Table.from_pylist(examples, schema=pa.schema(columns))
        tmp = out / f".{name}.parquet.tmp"
        pq.write_table(table, tmp)
        tmp.replace(out / f"{name}.parquet")
        summary[name] = stats.to_dict()
    write_json(data_dir(cfg) / "prepare.json", summary)
    return summary


AUTO_PROMPT = "Classify the user's message. Answer with exactly one of these labels and nothing else: {labels}."
MAX_AUTO_LABELS = 50


def system_prompt_for(cfg: ProjectConfig, records: list[Record] | None = None) -> str | None:
    """`data.system_prompt` as every stage uses it; `auto` resolved from the training split (or `records`)."""
    value = cfg.data.system_prompt
    if value != "auto":
        return value
    if records is None:
        path = data_dir(cfg) / "train.jsonl"
        records = load_split(cfg, "train") if path.exists() else []
    return auto_system_prompt(records)


def auto_system_prompt(records: list[Record]) -> str | None:
    """A classifier prompt naming the labels, when no record has a system prompt and the answers are a small set
    of short word labels; None otherwise."""
    from tunesmith.data.records import Conversation

    convs = [r for r in records if isinstance(r, Conversation) and r.messages]
    if not convs or any(r.messages[0]["role"] == "system" for r in convs):
        return None
    answers = [r.messages[-1]["content"].strip() for r in convs if r.messages[-1]["role"] == "assistant"]
    labels = sorted(set(answers))
    if (
        not answers
        or len(labels) > min(MAX_AUTO_LABELS, max(2, len(answers) // 2))
        or any(len(a) > 40 or "\n" in a or not any(c.isalpha() for c in a) for a in labels)
    ):
        return None  # not a set of word labels (numbers are answers to compute, not classes to name)
    return AUTO_PROMPT.format(labels=", ".join(labels))


def share_prefix_choice(cfg: ProjectConfig) -> tuple[bool, str]:
    """`data.share_prefix` resolved, and why: shared prefixes need packing, SFT and eager_varlen attention,
    which training chooses (`train.attn_implementation: auto`) everywhere but on CUDA GPUs."""
    d, t = cfg.data, cfg.train
    if d.share_prefix is False:
        return False, "data.share_prefix is false"
    needs = [
        why
        for bad, why in (
            (not d.packing, "data.packing is off"),
            (t.method != "sft", f"train.method is {t.method}"),
            (t.adapter == "prefix", "train.adapter is prefix (its virtual tokens go through transformers' own masks)"),
            (
                t.attn_implementation not in ("auto", "eager_varlen"),
                f"train.attn_implementation is {t.attn_implementation}",
            ),
        )
        if bad
    ]
    if not needs and d.share_prefix == "auto" and t.attn_implementation == "auto":
        from tunesmith.hardware import pick_device

        if pick_device(cfg.device) == "cuda":
            needs.append("training runs on a CUDA GPU, whose attention kernels take disjoint records")
    if needs and d.share_prefix is True:
        raise ConfigError(
            f"data.share_prefix is true, but {'; '.join(needs)}: shared prefixes need packing, SFT "
            "and train.attn_implementation eager_varlen (or auto on a CPU). Set data.share_prefix: auto"
        )
    if needs:
        return False, "; ".join(needs)
    return True, "records with a common untrained opening share one copy of it (eager_varlen attention)"


def _loss_shares(info: dict[str, Any]) -> dict[str, float]:
    """The share of the loss each replay source carries: the share of tokens it was asked for, or
    the smaller share it reached when fewer replay records were available."""
    shares = {"replay": min(info.get("ratio", 0.0), info.get("ratio_asked", 0.0))}
    if info.get("refusals"):  # asked for in full: a short set is repeated, its loss share kept
        shares["refusal"] = info["refusals"]["ratio_asked"] if info["refusals"]["tokens"] else 0.0
    if info.get("previous"):
        shares["previous"] = min(info["previous"]["ratio"], info["previous"]["ratio_asked"])
    return shares


def _replay(
    cfg: ProjectConfig, tokenizer: Any, records: list[Any], max_length: int, system: str | None
) -> tuple[list[Record], dict[str, Any]]:
    from tunesmith.data.replay import replay_records
    from tunesmith.data.template import conversation_of, tokenize_messages, with_system_prompt

    def count(record: Any, system: str | None = None) -> int:
        return len(tokenize_messages(with_system_prompt(conversation_of(record), system), tokenizer)["input_ids"])

    from tunesmith.data.template import task_system_prompt
    from tunesmith.paths import parent_info

    task_tokens = sum(n for n in (count(r, system) for r in records) if n <= max_length)
    return replay_records(
        cfg, tokenizer, task_tokens, count, max_length, parent_info(cfg), task_system_prompt(system, records)
    )


def check_and_split(cfg: ProjectConfig, no_lengths: bool = False) -> tuple[dict[str, Any], CheckOutcome]:
    """Check the config's data and write the splits: (split summary, check outcome)."""
    from tunesmith.models import tokenizer_or_none

    tokenizer = None if no_lengths else tokenizer_or_none(cfg.base_model, cfg.trust_remote_code)
    outcome = check_config(cfg, tokenizer=tokenizer, keep_records=True)
    if outcome.result.valid == 0:
        raise DataError(f"no valid records to split; see {outcome.out_dir / 'report.md'}")
    save_resolved_config(cfg)
    return split_outcome(cfg, outcome), outcome


@dataclass
class DataResult:
    """What the data stage did: the check (`check.json`), the split (`split.json`) and what training
    reads (`prepare.json`: the packed windows' statistics for SFT, the pairs' lengths for DPO)."""

    check: CheckResult
    split: dict[str, Any]
    prepared: dict[str, Any]
    out_dir: Path


def run_data(cfg: ProjectConfig, on_step: Callable[[str, Any], None] | None = None) -> DataResult:
    """check → split → prepare; `on_step(kind, value)` after each: checked (CheckOutcome), split (summary,
    folder), prepared (summary)."""
    from tunesmith.models import load_tokenizer

    step = on_step or (lambda kind, value: None)
    tokenizer = load_tokenizer(cfg.base_model, trust_remote_code=cfg.trust_remote_code)
    summary, outcome = check_and_split(cfg)
    step("checked", outcome)
    step("split", (summary, outcome.out_dir))
    if cfg.train.method == "sft":
        prepared = prepare_splits(cfg, tokenizer)
    else:
        from tunesmith.data.pairs import pair_lengths

        prepared = pair_lengths(cfg, tokenizer)
    step("prepared", prepared)
    return DataResult(outcome.result, summary, prepared, outcome.out_dir)


def save_resolved_config(cfg: ProjectConfig) -> Path:
    return write_atomic(data_dir(cfg) / "config.yaml", dump_config(cfg))
