"""`serve.engine: vllm`: the served versions answered by vLLM on a CUDA GPU, behind tunesmith's router.

tunesmith starts `vllm serve` as a child process on a loopback port, with the base model (named `base`)
and every served adapter (`--enable-lora --lora-modules name=folder`), waits until it answers, and then
takes the built-in engine's place: `submit` a `GenRequest` of token ids, get a future with the result.
So the same keys, limits, request log, canary and shadow routing and rollback sit in front. Each request
goes to vLLM's `/v1/completions` with the token ids the version's own tokenizer made (both engines see
the same tokens) and `model` the adapter's name, streamed, so the first token is timed and pieces reach
streaming clients; closing the stream at the deadline aborts the request in vLLM. A version promoted
while serving is loaded with `/v1/load_lora_adapter` (the child runs with
VLLM_ALLOW_RUNTIME_LORA_UPDATING). vLLM batches continuously; tunesmith keeps `serve.max_batch_size`
requests in flight and queues the rest (429 past `serve.max_queue`).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.export.engines import lora_rank
from tunesmith.serve.engine import BASE, GenRequest, answer_each, enqueue

BASE_NAME = "base"  # the base model's name inside vLLM (--served-model-name)


def check_vllm() -> None:
    """vLLM serves from a CUDA GPU: say what is missing before anything loads."""
    import torch

    if not torch.cuda.is_available():
        raise TunesmithError(
            "serve.engine vllm needs a CUDA GPU, and this machine has none; serve with "
            "serve.engine: transformers (any machine) or llama-cpp (fast on a CPU), or run "
            "`tunesmith registry export CONFIG aliases --format vllm` and its serve.sh on a GPU machine"
        )
    if shutil.which("vllm") is None:
        raise TunesmithError("serve.engine vllm needs vLLM: pip install vllm (the `vllm` command was not found)")


def launch_command(base: str, folders: dict[str, Path], port: int, extra: list[str]) -> list[str]:
    """`vllm serve` for the base model and every served adapter, on a loopback port."""
    cmd = ["vllm", "serve", base, "--host", "127.0.0.1", "--port", str(port), "--served-model-name", BASE_NAME]
    if folders:
        ranks = [int(json.loads((f / "adapter_config.json").read_text()).get("r", 8)) for f in folders.values()]
        cmd += [
            "--enable-lora",
            "--max-lora-rank",
            str(lora_rank(max(ranks))),
            "--max-loras",
            str(len(folders)),
            "--lora-modules",
            *[f"{name}={folder}" for name, folder in folders.items()],
        ]
    return cmd + list(extra)


class VllmEngine:
    """Requests answered by a vLLM server at `base_url`; `names` maps an adapter to its name in vLLM."""

    def __init__(
        self,
        base_url: str,
        tokenizer: Any,
        *,
        names: dict[str, str],
        n_ctx: int,
        max_in_flight: int = 8,
        max_queue: int = 64,
        process: subprocess.Popen | None = None,
        timeout_s: float = 600,
    ) -> None:
        import httpx

        self.base_url, self.tokenizer, self.names = base_url.rstrip("/"), tokenizer, dict(names)
        self.names.setdefault(BASE, BASE_NAME)
        self.queue: queue.Queue[GenRequest] = queue.Queue(maxsize=max_queue)
        self.model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=n_ctx))
        self.stats = {"batches": 0, "requests": 0, "mixed_batches": 0, "max_batch_seen": 0}
        self.timings: deque[tuple[float, float]] = deque(maxlen=4096)
        self.lock = threading.Lock()
        self.busy = 0
        self.process = process
        self.client = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=10))
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, name=f"tunesmith-vllm-{i}", daemon=True)
            for i in range(max(1, max_in_flight))
        ]

    @property
    def adapters(self) -> list[str]:
        return sorted(n for n in self.names if n != BASE)

    def start(self) -> VllmEngine:
        for t in self._threads:
            t.start()
        return self

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        self.client.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def add_adapter(self, name: str, folder: str) -> None:
        """A version promoted while serving, loaded into the running vLLM."""
        if name in self.names:
            return
        answer = self.client.post(
            f"{self.base_url}/v1/load_lora_adapter", json={"lora_name": name, "lora_path": folder}
        )
        if answer.status_code != 200:
            raise TunesmithError(
                f"vLLM did not load adapter {name} from {folder}: {answer.status_code} {answer.text[:300]}"
            )
        with self.lock:
            self.names[name] = name

    def submit(self, req: GenRequest) -> Future:
        if req.adapter not in self.names:
            raise KeyError(req.adapter)
        return enqueue(self.queue, req)

    def _loop(self) -> None:
        answer_each(self.queue, self._stop, self._counted)

    def _counted(self, req: GenRequest) -> None:
        with self.lock:
            self.busy += 1
            self.stats["requests"] += 1
            self.stats["max_batch_seen"] = max(self.stats["max_batch_seen"], self.busy)
        try:
            self._answer(req)
        finally:
            with self.lock:
                self.busy -= 1

    def _answer(self, req: GenRequest) -> None:
        body: dict[str, Any] = {
            "model": self.names[req.adapter],
            "prompt": req.prompt_ids,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if req.seed is not None:
            body["seed"] = req.seed
        if req.stop:
            body["stop"] = req.stop
        req.admitted = time.perf_counter()
        text, done, completion = "", None, None
        with self.client.stream("POST", f"{self.base_url}/v1/completions", json=body) as answer:
            if answer.status_code != 200:
                raise TunesmithError(f"vLLM answered {answer.status_code}: {answer.read()[:300]!r}")
            for line in answer.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    completion = chunk["usage"].get("completion_tokens")
                for choice in chunk.get("choices") or []:
                    piece = choice.get("text") or ""
                    if piece:
                        if req.first_token is None:
                            req.first_token = time.perf_counter()
                        text += piece
                        if req.on_text:
                            req.on_text(piece)
                    done = choice.get("finish_reason") or done
                if time.perf_counter() > req.deadline:  # leaving the stream aborts the request in vLLM
                    done = "timeout"
                    break
        if completion is None:
            completion = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        queued = req.admitted - req.enqueued
        first = (req.first_token or time.perf_counter()) - req.enqueued
        self.timings.append((queued, first))
        req.future.set_result(
            {
                "text": text,
                "completion_tokens": completion,
                "finish_reason": done or "length",
                "prompt_tokens": len(req.prompt_ids),
                "queued_s": queued,
                "first_token_s": first,
            }
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base_url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Until vLLM lists its models; its log's last lines when it exits or does not come up in time."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise TunesmithError(
                f"vLLM exited with status {process.returncode} while starting; its log ({log}) ends:\n{tail}"
            )
        try:
            if httpx.get(f"{base_url}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    process.terminate()
    raise TunesmithError(f"vLLM did not answer within {timeout_s:g} s (serve.vllm_start_timeout_s); its log: {log}")


def build_vllm(cfg: Any) -> tuple[VllmEngine, Any, dict[str, Any], dict[str, Any]]:
    """vLLM started over every served name, with the same targets and routers as the built-in engine."""
    from tunesmith.models import load_tokenizer
    from tunesmith.models.loading import resolve_model
    from tunesmith.serve.models import check_adapter, served_targets

    check_vllm()
    folders, targets, routers = served_targets(cfg)
    for folder in folders.values():
        check_adapter(folder)
    tokenizer = load_tokenizer(
        str(next(iter(folders.values()))) if folders else cfg.base_model, trust_remote_code=cfg.trust_remote_code
    )
    port = _free_port()
    log = cfg.output_path / "serve" / "vllm.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = launch_command(str(resolve_model(cfg.base_model)), folders, port, cfg.serve.vllm_args)
    env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    with open(log, "ab") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}"
    wait_ready(base_url, process, log, cfg.serve.vllm_start_timeout_s)
    n_ctx = cfg.serve.max_prompt_tokens + cfg.serve.max_tokens_limit
    engine = VllmEngine(
        base_url,
        tokenizer,
        names={n: n for n in folders},
        n_ctx=n_ctx,
        max_in_flight=cfg.serve.max_batch_size,
        max_queue=cfg.serve.max_queue,
        process=process,
        timeout_s=cfg.serve.request_timeout_s,
    )
    return engine, tokenizer, targets, routers
