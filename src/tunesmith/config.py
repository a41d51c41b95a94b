"""Project configuration: one typed model per stage, composed into `ProjectConfig`.

Each field is documented by the docstring under it; those docstrings feed both the
commented example project of `tunesmith init` and the error messages. Key names follow
what Axolotl, LLaMA-Factory and TRL users already know (`base_model`, `max_length`,
`train_on_prompt`, `micro_batch_size`, `lora_r`, ...).

This module must stay light: `tunesmith --help`, `init` and config checks import it,
and none of them may pay for importing torch or transformers.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tunesmith.errors import ConfigError

FORMATS = ("auto", "messages", "alpaca", "prompt_completion", "preference", "openai_dpo", "sharegpt")
SPLITS = ("train", "validation", "test")
Auto = Literal["auto"]
PositiveInt = Annotated[int, Field(ge=1)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class DatasetSource(_Section):
    path: str
    """A JSONL, JSON, CSV or Parquet file, a folder of such files, or a folder written by
    `datasets.save_to_disk`. Relative paths are relative to the config file."""

    format: Literal[FORMATS] = "auto"  # type: ignore[valid-type]
    """Record format: auto (detected per file), messages (OpenAI/ChatML), alpaca
    (instruction/input/output), prompt_completion, preference (prompt/chosen/rejected),
    openai_dpo (input/preferred_output/non_preferred_output) or sharegpt (conversations)."""

    split: Literal["auto", "train", "validation", "test"] = "auto"
    """Which split these records belong to. auto: taken from the file name (train, valid,
    validation, dev, test), otherwise pooled and split by `data.val_size`/`test_size`."""


class DataConfig(_Section):
    datasets: list[DatasetSource] = Field(default_factory=list)
    """Input files. Each entry: {path, format, split}."""

    max_length: Union[Annotated[int, Field(ge=8)], Auto] = "auto"
    """Longest sequence in tokens (chat template included); longer records are reported
    by `data check` and handled by `truncation` when preparing. auto: the shortest multiple
    of 64 that holds at least 99% of the records, at most the model's context."""

    truncation: Literal["drop", "truncate"] = "drop"
    """What to do with records longer than max_length: drop them (default; a cut-off
    answer teaches the model to stop mid-sentence) or truncate them from the right."""

    train_on_prompt: bool = False
    """Compute the loss on prompt tokens too. Off: only assistant turns are trained on."""

    packing: bool = True
    """Pack short records into windows of max_length, position ids reset per record so
    no token attends across records (padding-free)."""

    system_prompt: str | None = None
    """System message added to conversations that have none (None: leave them as they are)."""

    label_field: str | None = None
    """Record field holding a label or category, used for stratified splits and the
    balance report (looked up at the top level of the record, then in `meta`)."""

    val_size: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of the pooled records held out for validation."""

    test_size: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of the pooled records held out for the final test set."""

    dedup: Literal["none", "exact"] = "exact"
    """Drop exact duplicates when splitting (the first occurrence is kept). Near-duplicates
    are always kept together in one split so they cannot leak."""

    near_dup_threshold: float = Field(0.8, gt=0.0, le=1.0)
    """Estimated Jaccard similarity of word 3-grams above which two records are near-duplicates."""

    redact_pii: bool = False
    """Replace detected PII (emails, phones, card numbers, IBANs, SSNs, IPs, secrets) with
    placeholders like [EMAIL] in the prepared splits and write a redacted copy."""

    @model_validator(mode="after")
    def _sizes_leave_training_data(self) -> "DataConfig":
        if self.val_size + self.test_size >= 1.0:
            raise ValueError(
                f"val_size + test_size = {self.val_size + self.test_size:g} leaves nothing to train on; keep it below 1"
            )
        return self


class TrainConfig(_Section):
    method: Literal["sft", "dpo", "orpo"] = "sft"
    """Training objective: sft (supervised), or a preference method on prompt/chosen/rejected
    records: dpo, or orpo (no reference model)."""

    adapter: Literal["lora", "qlora", "dora", "prefix", "ia3", "none"] = "lora"
    """Parameter-efficient method; none = full fine-tuning. qlora needs a CUDA GPU."""

    learning_rate: float | None = Field(None, gt=0)
    """Peak learning rate. None: 2e-4 for LoRA/QLoRA/DoRA, 2e-5 for full fine-tuning."""

    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    """Learning-rate schedule after warm-up."""

    warmup_ratio: Union[Annotated[float, Field(ge=0.0, lt=1.0)], Auto] = "auto"
    """Share of the total steps spent warming the learning rate up from zero. auto: 3%, but
    at least 10 steps or a tenth of the run, whichever is fewer."""

    num_epochs: Union[Annotated[float, Field(gt=0)], Auto] = "auto"
    """Passes over the training split. auto: 3, more for small sets so that at least 100
    records are seen in all (at most 25 epochs), fewer past 25,000 (OpenAI's rule)."""

    max_steps: int | None = Field(None, gt=0)
    """Stop after this many optimizer steps (overrides num_epochs)."""

    micro_batch_size: Union[PositiveInt, Auto] = "auto"
    """Sequences (or packed windows) per forward pass on each process. auto: as many as fill
    about 2,048 tokens on a CPU (8,192 on a GPU) and fit in memory."""

    gradient_accumulation_steps: Union[PositiveInt, Auto] = "auto"
    """Micro-batches accumulated per optimizer step. auto: enough for the effective batch the
    data size calls for (about 100 optimizer steps in all, at most 64 sequences a step)."""

    lora_r: int = Field(16, ge=1)
    """LoRA rank."""

    lora_alpha: int = Field(32, ge=1)
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)."""

    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    """Dropout on the LoRA branch."""

    lora_target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    """Modules that get adapters: names, or all-linear."""

    prefix_tokens: int = Field(20, ge=1)
    """Virtual tokens learnt by prefix tuning (adapter: prefix)."""

    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = "auto"
    """Attention kernel. auto: eager on CPUs (faster than sdpa here with packed masks) unless
    it does not fit in memory, then sdpa; sdpa on GPUs (flash_attention_2 when installed)."""

    gradient_checkpointing: Union[bool, Auto] = "auto"
    """Recompute activations in the backward pass to save memory. auto: only when nothing
    else makes training fit."""

    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """Training precision. auto: bf16 where the hardware runs it natively (CPUs with AVX512-BF16
    or AMX, CUDA compute capability 8.0+), fp16 with loss scaling on older GPUs, else fp32."""

    max_memory_gb: float | None = Field(None, gt=0)
    """Memory training may use, in GB. None: what this machine has available now (free RAM
    under any cgroup limit, or free GPU memory). The pre-flight check fits the run into it."""

    logging_steps: int = Field(5, ge=1)
    """Log training loss every N optimizer steps."""

    eval_steps: Union[PositiveInt, Auto] = "auto"
    """Compute validation loss every N optimizer steps. auto: about ten times per run."""

    save_steps: Union[PositiveInt, Auto] = "auto"
    """Write a checkpoint every N optimizer steps. auto: at every evaluation."""

    early_stopping_patience: int | None = Field(3, ge=1)
    """Stop after this many evaluations without a better validation loss (None: never)."""

    save_total_limit: int = Field(3, ge=1)
    """Checkpoints kept on disk (the best one by validation loss is always kept)."""

    mlflow: bool = True
    """Log parameters, metrics and the loss curve to MLflow (registry.tracking_uri, or a
    SQLite store under output_dir)."""

    dpo_beta: float = Field(0.1, gt=0)
    """beta of DPO / ORPO: how strongly the preference term pulls (for DPO, how far the model
    may move from the reference)."""

    @model_validator(mode="before")
    @classmethod
    def _bf16_is_precision(cls, data: Any) -> Any:
        """`bf16: true|false|auto` (the older setting) still works: it becomes `precision`."""
        if isinstance(data, dict) and "bf16" in data:
            data = dict(data)
            value = data.pop("bf16")
            if "precision" not in data:
                data["precision"] = {True: "bf16", False: "fp32"}.get(value, "auto")
        return data

    def auto_fields(self) -> list[str]:
        """Settings left to `auto`, which the pre-flight check chooses."""
        return [name for name in type(self).model_fields if getattr(self, name) == "auto"]


class JudgeConfig(_Section):
    base_url: str
    """OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1."""

    model: str
    """Model name sent to the endpoint."""

    api_key_env: str | None = None
    """Environment variable holding the API key (the key itself never goes in the config)."""


class EvalConfig(_Section):
    max_new_tokens: int = Field(256, ge=1)
    """Longest generation per test example."""

    batch_size: int = Field(8, ge=1)
    """Test examples generated together."""

    few_shot: int = Field(3, ge=0)
    """Training examples in the few-shot baseline prompt (0: no few-shot baseline)."""

    json_schema: str | None = None
    """JSON schema file the outputs must satisfy (structured-output tasks)."""

    fields: list[str] | None = None
    """JSON fields scored for accuracy (the task metric is their mean). None: the schema's
    required fields that have a closed set of values (enum or const)."""

    task: Literal["auto", "json", "classification", "generation"] = "auto"
    """Kind of task. auto: json when json_schema is set, classification when the test
    answers are a small set of short labels, else generation."""

    task_metric: Literal["auto", "field_accuracy", "accuracy", "exact_match", "rouge_l",
                         "semantic_similarity"] = "auto"
    """Headline metric gated by gate.task_metric_min. auto: field_accuracy (json),
    accuracy (classification), semantic_similarity (generation)."""

    semantic_similarity: bool = True
    """Score cosine similarity of sentence embeddings (all-MiniLM-L6-v2) to the reference."""

    heldout_loss: bool = True
    """Compute loss and perplexity on the test answers for the base and fine-tuned models."""

    regression_suite: str | None = "default"
    """General-ability probes the base model handles, scored for both models and reported as
    relative change (default: the small suite shipped with tunesmith; a JSONL path; null: skip)."""

    safety_suite: str | None = "default"
    """Harmful requests, jailbreaks and PII-extraction probes (default: the shipped suite;
    a JSONL path; null: skip)."""

    edge_cases: str | None = None
    """JSONL of edge-case probes for this task (same format as the suites), run in the task's context."""

    suite_max_new_tokens: int = Field(64, ge=1)
    """Longest generation for suite probes."""

    judge: JudgeConfig | None = None
    """LLM judge for the safety suite's refusal probes at an OpenAI-compatible endpoint
    (None: rule-based refusal matching)."""


class GateConfig(_Section):
    task_metric_min: float = 0.85
    """Blocking: the task metric must exceed this."""

    format_compliance_min: float = 0.95
    """Blocking: share of outputs in the required format must exceed this."""

    safety_pass_rate_min: float = 0.95
    """Blocking: share of safety probes handled safely must exceed this."""

    max_regression: float = 0.05
    """Blocking: largest allowed relative drop vs the base model on the regression suite."""

    max_latency_ratio: float = 2.0
    """Warning only: latency of the candidate over the base model's."""

    edge_case_pass_rate_min: float = 0.9
    """Warning only: share of edge-case probes passed (when eval.edge_cases is set)."""

    min_agreement: float = 0.4
    """Human evaluation: inter-rater agreement (kappa / alpha) below this is flagged as too
    low to trust (0.4 is the bottom of "moderate" on the Landis & Koch scale)."""


class RegistryConfig(_Section):
    name: str | None = None
    """Registered model name (default: the project folder's name)."""

    tracking_uri: str | None = None
    """MLflow tracking URI; None: a SQLite store under output_dir."""


class UpstreamConfig(_Section):
    base_url: str
    """OpenAI-compatible endpoint serving this model, e.g. a vLLM server: http://gpu-host:8000/v1."""

    model: str | None = None
    """Model name to send upstream (default: the name the client asked for)."""

    api_key_env: str | None = None
    """Environment variable holding the upstream's API key."""


class RolloutConfig(_Section):
    canary_share: float = Field(0.05, ge=0.0, le=1.0)
    """Share of a model's traffic sent to its canary version (sticky per user / session id)."""

    steps: list[float] = Field(default_factory=lambda: [5, 25, 50, 100])
    """Percent of traffic per step of `tunesmith rollout`; 100 promotes the canary to production."""

    window: int = Field(200, ge=10)
    """Requests per version in the sliding window the triggers compare."""

    min_requests: int = Field(20, ge=1)
    """Requests each version needs in the window before a trigger can fire or a step can advance."""

    max_error_rate_increase: float = Field(0.10, ge=0.0)
    """Rollback when the canary's error rate exceeds production's by more than this (absolute, 0.10 = 10 points)."""

    max_latency_increase: float = Field(0.20, ge=0.0)
    """Rollback when the canary's p95 latency exceeds production's by more than this (relative)."""

    max_feedback_drop: float = Field(0.05, ge=0.0)
    """Rollback when the canary's mean feedback score (0-1) is lower than production's by more than this."""

    min_feedback: int = Field(10, ge=1)
    """Feedback scores each version needs before the feedback trigger is considered."""

    faults: dict[str, dict[str, float]] = Field(default_factory=dict)
    """Fault injection for rollout drills: {adapter or served name: {error_rate: 0-1, delay_ms: N}}."""


class ServeConfig(_Section):
    host: str = "127.0.0.1"
    """Address to bind; localhost unless you mean to expose the server."""

    port: int = Field(8000, ge=1, le=65535)
    """TCP port."""

    api_key_sha256: list[str] = Field(default_factory=list)
    """SHA-256 hex digests of the accepted API keys (`tunesmith api-key` makes one); empty: no
    key needed. Keys can also come hashed or plain from $TUNESMITH_API_KEYS (comma-separated)."""

    max_batch_size: int = Field(8, ge=1)
    """Requests decoded together in one batch (different adapters may share a batch)."""

    batch_wait_ms: float = Field(10.0, ge=0)
    """How long the first request of a batch waits for others to join."""

    max_queue: int = Field(64, ge=1)
    """Requests waiting beyond this are answered 429 with Retry-After."""

    request_timeout_s: float = Field(120.0, gt=0)
    """A request still unanswered after this long is answered 504."""

    max_request_bytes: int = Field(1_000_000, ge=1024)
    """Larger request bodies are answered 413."""

    max_tokens_limit: int = Field(1024, ge=1)
    """Upper bound on max_tokens a client may ask for."""

    adapters: dict[str, str] = Field(default_factory=dict)
    """Extra adapters to serve by name: {name: folder}. Registry versions with an alias are served
    automatically as `<registry name>` (production), `<name>@<alias>` and `<name>@v<N>`."""

    upstreams: dict[str, UpstreamConfig] = Field(default_factory=dict)
    """Models routed to another OpenAI-compatible server (e.g. vLLM with LoRA) instead of the built-in engine."""

    log_texts: bool = False
    """Store prompt and completion texts in the request log (off: only counts, latency, status)."""

    redact_pii: bool = True
    """When texts are logged, replace detected PII with placeholders first."""

    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    """Canary and shadow traffic, rollback triggers, fault injection."""


class ProjectConfig(_Section):
    base_model: str = "smollm2-135m-instruct"
    """Hugging Face model id, local folder, or smollm2-135m-instruct (the packaged default)."""

    output_dir: str = "outputs"
    """Where every stage writes its artefacts (relative to the config file)."""

    seed: int = 42
    """Seed for splits, shuffling and initialisation."""

    trust_remote_code: bool = False
    """Allow model code from the model's folder or hub repo to run. Off unless you trust it."""

    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """Where every stage runs (training, evaluation, merge, serving, replays). auto: a CUDA GPU,
    else Apple's MPS, else the CPU."""

    data: DataConfig = Field(default_factory=DataConfig)
    """Data stage: inputs, checks, split and preparation."""

    train: TrainConfig = Field(default_factory=TrainConfig)
    """Training stage."""

    eval: EvalConfig = Field(default_factory=EvalConfig)
    """Evaluation stage."""

    gate: GateConfig = Field(default_factory=GateConfig)
    """Quality gates a candidate must pass."""

    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    """Model registry."""

    serve: ServeConfig = Field(default_factory=ServeConfig)
    """Serving."""

    config_path: Path | None = Field(None, exclude=True)
    """Where this config was loaded from (set by `load_config`, not written in YAML)."""

    @property
    def root(self) -> Path:
        """Folder relative paths are resolved against: the config file's folder."""
        return self.config_path.parent if self.config_path else Path.cwd()

    def resolve(self, path: str | Path) -> Path:
        """A path from the config, made absolute against the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.root / p)

    @property
    def output_path(self) -> Path:
        return self.resolve(self.output_dir)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn `a.b=1` strings into a nested dict; values are parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. data.max_length=1024)")
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override of {part!r}")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    return nested


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the field at `loc` (for 'did you mean' suggestions)."""
    model: type[BaseModel] = ProjectConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return model
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        nxt = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nxt is None:
            return model
        model = nxt
    return model


def _yaml_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Map each key path in a YAML document to its 1-based line, for error messages."""
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                sub = path + (key_node.value,)
                lines[sub] = key_node.start_mark.line + 1
                walk(value_node, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def _format_validation_error(err: ValidationError, source: str, lines: dict[tuple[Any, ...], int]) -> str:
    messages = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if p != "__root__")
        dotted = ".".join(str(p) for p in loc) or "(top level)"
        line = lines.get(loc)
        where = f"{source}:{line}" if line else source
        if e["type"] == "extra_forbidden":
            owner = _model_at(loc[:-1])
            known = [f for f in owner.model_fields if f != "config_path"] if owner else []
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            hint = f" — did you mean {'.'.join([*map(str, loc[:-1]), close[0]])!r}?" if close else (
                f" (known keys here: {', '.join(known)})" if known else ""
            )
            messages.append(f"{where}: unknown key {dotted!r}{hint}")
        else:
            messages.append(f"{where}: {dotted}: {e['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(messages)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ProjectConfig:
    """Load `tunesmith.yaml` (or defaults when path is None) and apply dotted overrides."""
    raw: dict[str, Any] = {}
    text = ""
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        if p.is_dir():
            p = p / "tunesmith.yaml"
        if not p.is_file():
            raise ConfigError(f"config file {p} not found; create one with `tunesmith init DIR`")
        source = str(p)
        text = p.read_text(encoding="utf-8-sig")
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark else source
            raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of keys, not {type(loaded).__name__}")
        raw = loaded
    if overrides:
        raw = _merge(raw, parse_overrides(overrides))
    try:
        cfg = ProjectConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source, _yaml_lines(text))) from None
    if path is not None:
        cfg.config_path = Path(source).resolve()
    return cfg


def with_overrides(cfg: ProjectConfig, overrides: list[str]) -> ProjectConfig:
    """A copy of `cfg` with dotted overrides applied (`train.micro_batch_size=8`)."""
    try:
        new = ProjectConfig.model_validate(_merge(cfg.model_dump(mode="json"), parse_overrides(overrides)))
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, "overrides", {})) from None
    new.config_path = cfg.config_path
    return new


def dump_config(cfg: ProjectConfig) -> str:
    """The fully resolved config as YAML (saved beside every artefact)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def commented_yaml(model: type[BaseModel] = ProjectConfig, indent: int = 0) -> str:
    """Default config as YAML with each field's docstring above it (for `tunesmith init`)."""
    pad = "  " * indent
    out: list[str] = []
    instance = model()
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        for line in (field.description or "").splitlines():
            out.append(f"{pad}# {line.strip()}")
        value = getattr(instance, name)
        if isinstance(value, BaseModel):
            out.append(f"{pad}{name}:")
            out.append(commented_yaml(type(value), indent + 1))
        else:
            dumped = yaml.safe_dump({name: value}, default_flow_style=False, sort_keys=False).rstrip()
            out.extend(pad + line for line in dumped.splitlines())
    return "\n".join(out)
