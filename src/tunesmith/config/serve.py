"""`registry:` and `serve:` — where versions live, and how they are served and rolled out."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tunesmith.config.section import Section


class RegistryConfig(Section):
    name: str | None = None
    """Registered model name (default: the project folder's name)."""

    tracking_uri: str | None = None
    """MLflow tracking URI; None: a SQLite store under output_dir."""


class UpstreamConfig(Section):
    base_url: str
    """OpenAI-compatible endpoint serving this model, e.g. a vLLM server: http://gpu-host:8000/v1."""

    model: str | None = None
    """Model name to send upstream (default: the name the client asked for)."""

    api_key_env: str | None = None
    """Environment variable holding the upstream's API key."""


class RolloutConfig(Section):
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

    max_cost_increase: float | None = Field(None, ge=0.0)
    """Rollback when the canary's cost per request exceeds production's by more than this (relative): on
    one machine, its mean answered latency (`cost.serving_usd_per_hour` x seconds; a canary that answers at
    more length costs more). None: off."""

    max_feedback_drop: float = Field(0.05, ge=0.0)
    """Rollback when the canary's mean feedback score (0-1) is lower than production's by more than this."""

    min_feedback: int = Field(10, ge=1)
    """Feedback scores each version needs before the feedback trigger is considered."""

    max_flag_increase: float = Field(0.05, ge=0.0)
    """Safety incident: rollback when the share of the canary's checked responses that were flagged
    exceeds production's by more than this (absolute). Flags come from users (`POST /v1/feedback`
    with `"flag": "unsafe"`) and from the server checking a sample of answers (safety_sample)."""

    min_flag_checks: int = Field(20, ge=1)
    """Checked responses each version needs before the safety trigger is considered."""

    safety_sample: float = Field(0.2, ge=0.0, le=1.0)
    """Share of routed answers the server checks itself: an answer that leaks personal data (an
    e-mail, phone, card or ID number, key) the prompt did not contain is flagged."""

    faults: dict[str, dict[str, float]] = Field(default_factory=dict)
    """Fault injection for rollout drills: {adapter or served name: {error_rate: 0-1, delay_ms: N}}."""


class JobsConfig(Section):
    enabled: bool = True
    """Serve OpenAI's fine-tuning API (/v1/files, /v1/fine_tuning/jobs): each job runs `tunesmith run`
    on the uploaded files, with this server's base model, and its model is served as `ft:...`."""

    worker: bool = True
    """Start a worker process with the server. Off: run `tunesmith jobs worker CONFIG` yourself
    (another terminal, another machine sharing output_dir)."""

    max_parallel: int = Field(1, ge=1)
    """Jobs one worker trains at once; a further job starts only when its pre-flight memory
    estimate fits beside those running."""

    max_file_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    """Largest uploaded file."""

    max_active_jobs_per_org: int = Field(10, ge=1)
    """Jobs an organisation may have waiting or running at once; one more is answered 429."""

    max_files_per_org: int = Field(100, ge=1)
    """Files an organisation may keep; one more is answered 429 until it deletes some."""

    max_bytes_per_org: int = Field(4 * 1024**3, ge=1024)
    """Bytes of files an organisation may keep."""

    project: dict[str, Any] = Field(default_factory=dict)
    """Settings every job's config starts from (any of the train, eval, gate, data sections);
    the job's own hyperparameters override them."""


class ServeConfig(Section):
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

    max_prompt_tokens: int = Field(4096, ge=1)
    """Longest prompt accepted, in tokens; a prompt plus its max_tokens must also fit the model's
    context. Longer ones are answered 400 (context_length_exceeded) before they reach a batch."""

    max_json_depth: int = Field(32, ge=4)
    """Deepest nesting accepted in a JSON body (400 beyond it)."""

    admin_key_sha256: list[str] = Field(default_factory=list)
    """SHA-256 digests of the keys allowed on /admin/* (rollout, promote): separate from the
    inference keys. Empty: /admin/* is refused when inference keys are set, and open to
    localhost only when no key is set at all. Also from $TUNESMITH_ADMIN_KEYS."""

    alias_poll_s: float = Field(5.0, ge=0)
    """How often a running server re-reads the registry's aliases, so `registry promote` and
    `registry rollback` reach it without a restart (0: never)."""

    adapters: dict[str, str] = Field(default_factory=dict)
    """Extra adapters to serve by name: {name: folder}. Registry versions with an alias are served
    automatically as `<registry name>` (production), `<name>@<alias>` and `<name>@v<N>`."""

    engine: Literal["transformers", "llama-cpp", "vllm"] = "transformers"
    """What answers the requests: `transformers` (batches requests and LoRA adapters over one base model),
    `llama-cpp` (each version merged and answered by llama.cpp from a GGUF file, one request at a time;
    needs `pip install 'tunesmith[llamacpp]'`) or `vllm` (vLLM started on a CUDA GPU with the base and every
    served adapter; needs `pip install vllm`). Measured on 2 CPU cores: llama-cpp q8_0 answers one client 3.8x
    faster; at 8 concurrent clients it makes 0.61x the tokens/s and each request waits its turn (time to
    first token 25x). docs/deploy.md has the figures. The router in front (keys, limits, request log, canary, rollback)
    is the same for all three."""

    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    """The built-in engine's weights: auto serves in the training precision (`train.precision`,
    bf16 where the hardware runs it natively); fp16 needs a CUDA GPU. On a 2-core AMX CPU fp32
    answers one client 1.15x faster than bf16 (its first token 1.23x later), and bf16 makes 1.42x fp32's
    tokens/s at 8 clients (docs/deploy.md): fp32 for a single user, the default for concurrent ones."""

    vllm_args: list[str] = Field(default_factory=list)
    """Extra arguments for `vllm serve` with `engine: vllm`, e.g. ["--gpu-memory-utilization", "0.8"]."""

    vllm_start_timeout_s: float = Field(900, gt=0)
    """How long `engine: vllm` waits for vLLM to load the model and answer before giving up."""

    gguf_quant: Literal["f16", "q8_0"] = "q8_0"
    """The GGUF weights `engine: llama-cpp` serves: f16, or q8_0 (8-bit blocks, half the memory)."""

    upstreams: dict[str, UpstreamConfig] = Field(default_factory=dict)
    """Models routed to another OpenAI-compatible server (e.g. vLLM with LoRA) instead of the built-in engine."""

    log_texts: bool = False
    """Store prompt and completion texts in the request log (off: only counts, latency, status)."""

    redact_pii: bool = True
    """When texts are logged, replace detected PII with placeholders first."""

    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    """Canary and shadow traffic, rollback triggers, fault injection."""

    organizations: dict[str, list[str]] = Field(default_factory=dict)
    """Organisation name -> SHA-256 digests of its API keys. A key sees only its organisation's
    files and fine-tuning jobs; a key not listed is an organisation of its own."""

    pages: bool = True
    """Web pages at /ui/ (runs, evaluation, registry, rollout, human evaluation, playground)."""

    jobs: JobsConfig = Field(default_factory=JobsConfig)
    """The local OpenAI fine-tuning API (files and fine_tuning.jobs)."""
