"""`serve.engine: llama-cpp`: each served version answered by llama.cpp from its merged GGUF.

The same router sits in front (keys, limits, request log, canary and shadow, rollback): this
engine takes the built-in engine's place and its interface (`submit` a `GenRequest` of token
ids, a future with the result). The prompt is tokenized by the version's own tokenizer, as for
the built-in engine, and llama.cpp gets the token ids: both engines see the same tokens.
llama-cpp-python's `Llama` serves one sequence at a time, so one worker thread answers requests
in arrival order; a `Llama` keeps the previous prompt's cache, and a prompt that shares its
start (the system prompt) is evaluated from where they differ.

Each version is merged and written as GGUF once, cached under
`<output_dir>/serve/gguf/<name>-<quant>.gguf` (a registry version's file never changes).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.serve.engine import BASE, GenRequest, answer_each, enqueue


def load_llama(path: Path, n_ctx: int) -> Any:
    from tunesmith.export.gguf_file import ExportError
    from tunesmith.export.llama import open_gguf

    try:
        return open_gguf(path, n_ctx=n_ctx, n_batch=512)
    except ExportError:
        raise TunesmithError(
            "serve.engine llama-cpp needs llama-cpp-python: pip install 'tunesmith[llamacpp]' "
            "(it compiles llama.cpp, a few minutes), or set serve.engine: transformers"
        ) from None


class LlamaCppEngine:
    """One llama.cpp model per served name (BASE for the base model), answered one request at a time."""

    def __init__(
        self, models: dict[str, Any], tokenizer: Any, *, n_ctx: int, max_queue: int = 64, gguf_for: Any = None
    ) -> None:
        self.llamas, self.tokenizer = dict(models), tokenizer
        self.gguf_for = gguf_for  # (name, adapter folder) -> GGUF path, for versions promoted while serving
        self.queue: queue.Queue[GenRequest] = queue.Queue(maxsize=max_queue)
        eos = tokenizer.eos_token_id
        self.stop_ids = {eos} | {m.token_eos() for m in self.llamas.values()}
        self.model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=n_ctx))
        self.n_ctx = n_ctx
        self.stats = {"batches": 0, "requests": 0, "mixed_batches": 0, "max_batch_seen": 0}
        self.timings: deque[tuple[float, float]] = deque(maxlen=4096)
        self.lock = threading.Lock()
        self.busy = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tunesmith-llama-cpp", daemon=True)

    @property
    def adapters(self) -> list[str]:
        return sorted(n for n in self.llamas if n != BASE)

    def start(self) -> LlamaCppEngine:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def add_adapter(self, name: str, folder: str) -> None:
        """A version promoted while serving: merged, written as GGUF (cached) and loaded beside the others."""
        if name in self.llamas:
            return
        if self.gguf_for is None:
            raise TunesmithError("this llama.cpp engine cannot load new versions while serving")
        llama = load_llama(self.gguf_for(name, Path(folder)), self.n_ctx)
        with self.lock:
            self.llamas[name] = llama

    def submit(self, req: GenRequest) -> Future:
        if req.adapter not in self.llamas:
            raise KeyError(req.adapter)
        return enqueue(self.queue, req)

    def _loop(self) -> None:
        answer_each(self.queue, self._stop, self._one)

    def _one(self, req: GenRequest) -> None:
        self.busy = 1
        try:
            with self.lock:
                self._answer(req)
        finally:
            self.busy = 0

    def _answer(self, req: GenRequest) -> None:
        self.stats["requests"] += 1
        self.stats["batches"] += 1
        self.stats["max_batch_seen"] = max(self.stats["max_batch_seen"], 1)
        llama = self.llamas[req.adapter]
        req.admitted = time.perf_counter()
        ids: list[int] = []
        text, sent, done = "", 0, None
        if req.temperature > 0 and req.seed is not None:
            llama.set_seed(req.seed)
        tokens = llama.generate(
            req.prompt_ids,
            temp=req.temperature,
            top_p=req.top_p,
            top_k=0 if req.temperature else 1,
            repeat_penalty=1.0,
            reset=True,
        )
        for token in tokens:
            if req.first_token is None:
                req.first_token = time.perf_counter()
            if token in self.stop_ids:
                done = "stop"
                break
            ids.append(token)
            if req.on_text or req.stop:
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                for s in req.stop:
                    at = text.find(s)
                    if at >= 0:
                        text, done = text[:at], "stop"
                if req.on_text and len(text) > sent and not text.endswith("\ufffd"):
                    req.on_text(text[sent:])
                    sent = len(text)
            if done:
                break
            if len(ids) >= req.max_tokens:
                done = "length"
                break
            if time.perf_counter() > req.deadline:
                done = "timeout"
                break
        if not req.stop or done != "stop":
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if req.on_text and len(text) > sent:
            req.on_text(text[sent:])
        queued = req.admitted - req.enqueued
        first = (req.first_token or time.perf_counter()) - req.enqueued
        self.timings.append((queued, first))
        req.future.set_result(
            {
                "text": text,
                "completion_tokens": len(ids),
                "finish_reason": done or "length",
                "prompt_tokens": len(req.prompt_ids),
                "queued_s": queued,
                "first_token_s": first,
            }
        )


def served_gguf(cfg: Any, name: str, folder: Path | None) -> Path:
    """The GGUF of a served name (the base when `folder` is None), written once into the serve cache.
    The file name carries a digest of the adapter's weights, so a changed `serve.adapters` folder is
    written again rather than served stale."""
    import tempfile

    from tunesmith.export.gguf_file import write_gguf
    from tunesmith.files import sha256_file
    from tunesmith.models.loading import resolve_model

    quant = cfg.serve.gguf_quant
    cache = cfg.output_path / "serve" / "gguf"
    cache.mkdir(parents=True, exist_ok=True)
    if folder is None:
        return _cached(
            cache / f"base-{quant}.gguf",
            lambda out: write_gguf(Path(resolve_model(cfg.base_model)), out, quant=quant, name="base"),
        )
    weights = next(iter(sorted(folder.glob("*.safetensors"))), None)
    digest = sha256_file(weights)[:12] if weights else "x"

    def write(out: Path) -> Path:
        from tunesmith.models.merge import merge_adapter

        with tempfile.TemporaryDirectory(prefix=".merge-", dir=cache) as tmp:
            merged = merge_adapter(
                folder, cfg.base_model, Path(tmp) / "merged", trust_remote_code=cfg.trust_remote_code, device="cpu"
            )
            return write_gguf(merged, out, quant=quant, name=name)

    return _cached(cache / f"{name}-{digest}-{quant}.gguf", write)


def _cached(path: Path, write: Any) -> Path:
    if not path.exists():
        from tunesmith.console import status

        with status(f"Writing {path.name} for llama.cpp (once)"):
            write(path)
    return path


def build_llama_cpp(cfg: Any) -> tuple[LlamaCppEngine, Any, dict[str, Any], dict[str, Any]]:
    """The llama.cpp engine over every served name, with the same targets and routers as the built-in one."""
    from tunesmith.models import load_tokenizer
    from tunesmith.serve.models import served_targets

    folders, targets, routers = served_targets(cfg)
    tokenizer = load_tokenizer(
        str(next(iter(folders.values()))) if folders else cfg.base_model, trust_remote_code=cfg.trust_remote_code
    )
    n_ctx = min(cfg.serve.max_prompt_tokens + cfg.serve.max_tokens_limit, 8192)
    models = {BASE: load_llama(served_gguf(cfg, "base", None), n_ctx)}
    for name, folder in folders.items():
        models[name] = load_llama(served_gguf(cfg, name, folder), n_ctx)
    engine = LlamaCppEngine(
        models,
        tokenizer,
        n_ctx=n_ctx,
        max_queue=cfg.serve.max_queue,
        gguf_for=lambda name, folder: served_gguf(cfg, name, folder),
    )
    return engine, tokenizer, targets, routers
