"""The built-in generation engine: one base model, many LoRA adapters, requests batched together.

Requests wait in a bounded queue; a worker thread takes up to `max_batch` of them (waiting `batch_wait_s` for
company after the first) and decodes them as one batch, each row with its own adapter (`multilora.rows`,
"__base__" for none), its own sampling settings, stop strings and token budget, and streams text deltas as they come.
The batching is continuous: at every decoding step, requests that arrived are prefilled and join the running batch
(their KV cache left-padded to its length and stacked onto it; arrivals during a prefill too, until the running rows
have waited `hold_steps` steps), and finished rows leave it, as vLLM and TGI do; nobody waits for a batch to end.

The decode loop is written here rather than calling `model.generate`: generate applies one set of sampling settings
to the whole batch and its streamers handle one sequence, while a server batches requests that differ in both. It is
a plain KV-cache loop over the model's forward (the cache growing in place, `models/kvcache.py`); sampling uses torch
(temperature, top-p, a per-request seeded generator).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.models import kvcache, multilora
from tunesmith.models.generate import prefill
from tunesmith.serve.threads import off_this_thread

BASE = multilora.BASE


class QueueFull(Exception):
    """The request queue is at capacity; the caller should answer 429."""


@dataclass
class GenRequest:
    prompt_ids: list[int]
    adapter: str = BASE
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    on_text: Callable[[str], None] | None = None  # called from the worker thread with each new piece of text
    deadline: float = float("inf")
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)
    admitted: float | None = None  # when its prefill began
    first_token: float | None = None  # when its first token was taken


@dataclass
class _Row:
    req: GenRequest
    ids: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0
    done: str | None = None  # finish reason
    generator: Any = None


def enqueue(waiting: queue.Queue[GenRequest], req: GenRequest) -> Future:
    """Queue a request for an engine's worker; QueueFull (the caller answers 429) when the queue is at capacity."""
    try:
        waiting.put_nowait(req)
    except queue.Full:
        raise QueueFull from None
    return req.future


def answer_each(waiting: queue.Queue[GenRequest], stop: threading.Event, answer: Callable[[GenRequest], None]) -> None:
    """A one-request-at-a-time engine's worker (llama.cpp, vLLM): take each queued request still wanted and
    `answer` it, until `stop`; a request that fails gets its exception, and the worker goes on."""
    while not stop.is_set():
        try:
            req = waiting.get(timeout=0.1)
        except queue.Empty:
            continue
        if not req.future.set_running_or_notify_cancel():
            continue
        try:
            answer(req)
        except Exception as exc:  # one failed request, not the engine
            if not req.future.done():
                req.future.set_exception(exc)


class Engine:
    def __init__(
        self, model: Any, tokenizer: Any, *, max_batch: int = 8, max_queue: int = 64, batch_wait_s: float = 0.01
    ) -> None:
        import torch

        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_batch, self.batch_wait_s = max_batch, batch_wait_s
        self.queue: queue.Queue[GenRequest] = queue.Queue(maxsize=max_queue)
        self.peft = hasattr(model, "peft_config")
        self._layers: str | None = None  # what the LoRA layers are set to: BASE (disabled), an adapter, or unknown
        gen = getattr(model, "generation_config", None)
        eos = gen.eos_token_id if gen is not None and gen.eos_token_id is not None else tokenizer.eos_token_id
        self.stop_ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stats = {"batches": 0, "requests": 0, "mixed_batches": 0, "max_batch_seen": 0}
        self.timings: deque[tuple[float, float]] = deque(maxlen=4096)  # recent (queued_s, first_token_s)
        self._torch = torch
        if self.peft:
            multilora.install(model)
        self.lock = threading.Lock()  # held while a batch runs; adapters are added between batches
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tunesmith-engine", daemon=True)
        self.busy = 0
        self._admitted: list[GenRequest] = []  # joined the running batch after it started
        self._step_s, self.hold_steps = 0.0, 2.0  # the last decoding step's seconds; prefills may hold the running
        # rows up for hold_steps of them (benchmarks/serve_prefill_hold.py: with 32 streams 50 ms apart, unbounded
        # held a stream 1.71 s at p95; 2 steps, 0.43 s, for a time to first token of 0.41 s at p50 against 0.33)

    @property
    def adapters(self) -> list[str]:
        return sorted(self.model.peft_config) if self.peft else []

    def start(self) -> Engine:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def add_adapter(self, name: str, folder: str) -> None:
        """Load another LoRA adapter while serving (between batches), in a thread of its own (`off_this_thread`)."""
        with self.lock:
            off_this_thread(self._add_adapter, name, folder)

    def _add_adapter(self, name: str, folder: str) -> None:
        if self._layers == BASE:  # loading into disabled layers: enabled again, as peft expects them
            self.model.base_model.enable_adapter_layers()
        self._layers = None
        if not self.peft:  # the first adapter of a server that started with the base model alone
            from peft import PeftModel

            model = PeftModel.from_pretrained(self.model, folder, adapter_name=name).eval()
            try:
                multilora.install(model)
            except TunesmithError:  # LoRA the engine cannot apply: the base model alone again
                self.model = model.unload()
                raise
            self.model, self.peft = model, True
        elif name not in self.adapters:
            self.model.load_adapter(folder, adapter_name=name)
            self.model.eval()
            try:
                multilora.install(self.model)
            except TunesmithError:
                self.model.delete_adapter(name)
                multilora.install(self.model)
                raise

    def submit(self, req: GenRequest) -> Future:
        if req.adapter != BASE and req.adapter not in self.adapters:
            raise KeyError(req.adapter)
        return enqueue(self.queue, req)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                first = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = [first]
            until = time.perf_counter() + self.batch_wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get(timeout=max(0.0, until - time.perf_counter())))
                except queue.Empty:
                    break
            batch = [r for r in batch if r.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                self._serve(batch)
            except Exception as exc:  # one bad batch must not kill the server
                for r in batch + self._admitted:
                    if not r.future.done():
                        r.future.set_exception(exc)
            finally:
                self.busy = 0
                self._admitted = []

    def _pick(self, logits: Any, rows: list[_Row]) -> list[int]:
        torch = self._torch
        picks = torch.max(logits, dim=-1).indices.tolist()  # greedy: argmax's pick, faster; sampled rows below
        if any(row.req.temperature > 0 for row in rows):
            logits = logits.float().cpu()  # each row's seeded generator lives on the CPU
        for i, row in enumerate(rows):
            r = row.req
            if r.temperature <= 0:
                continue
            probs = torch.softmax(logits[i].float() / r.temperature, dim=-1)
            if r.top_p < 1.0:
                sorted_p, order = probs.sort(descending=True)
                keep = sorted_p.cumsum(0) - sorted_p < r.top_p
                keep[0] = True  # the most likely token always stays (a top_p that underflows float32 keeps only it)
                probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
            if not bool(torch.isfinite(probs).all()) or float(probs.sum()) <= 0:
                continue  # nothing to sample from (non-finite logits): this row stays greedy, its neighbours unharmed
            picks[i] = int(torch.multinomial(probs, 1, generator=row.generator))
        return picks

    def _emit(self, row: _Row) -> None:
        text = self.tokenizer.decode(row.ids, skip_special_tokens=True)
        for s in row.req.stop:
            at = text.find(s)
            if at >= 0:
                text, row.done = text[:at], "stop"
        if text.endswith("\ufffd") and row.done is None:  # half a UTF-8 character: wait for the rest
            return
        row.text = text
        if row.req.on_text and len(text) > row.sent:
            row.req.on_text(text[row.sent :])
        row.sent = max(row.sent, len(text))

    def _serve(self, batch: list[GenRequest]) -> None:
        """Continuous batching: the running batch decodes one token per step; requests that arrive
        meanwhile are prefilled and join it at the next step, and finished ones leave at once, so a
        new request never waits for a whole batch to end. The lock is taken per step: adapters are
        added between steps."""
        torch = self._torch
        self.stats["batches"] += 1
        rows: list[_Row] = []
        past = mask = pos = last = None
        waiting = batch
        while True:
            if rows:
                began = time.perf_counter()
                with torch.no_grad(), self.lock:
                    step_mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=mask.dtype, device=mask.device)], 1)
                    with self._adapter_setup([r.req for r in rows]):
                        out = self.model(
                            input_ids=last,
                            attention_mask=step_mask,
                            position_ids=pos,
                            past_key_values=past,
                            use_cache=True,
                            logits_to_keep=1,
                        )
                    past, mask, pos = out.past_key_values, step_mask, pos + 1
                    picks = self._pick(out.logits[:, -1, :], rows)
                self._count(rows)
                self._take(rows, picks)
                last = torch.tensor([[t] for t in picks], device=mask.device)
                self._step_s = time.perf_counter() - began
                keep = [i for i, r in enumerate(rows) if not r.done]
                if len(keep) < len(rows):
                    rows = [rows[i] for i in keep]
                    if rows:
                        index = torch.tensor(keep, device=mask.device)
                        past.batch_select_indices(index)
                        mask, pos, last = mask[index], pos[index], last[index]
                        past, mask = _trim(past, mask)
            room = self.max_batch - len(rows)
            if not waiting and room > 0:
                waiting = self._arrivals(room)
            token_at = time.perf_counter() if rows else None  # when the running rows took their last token
            while waiting:  # arrivals during a prefill are prefilled too before the next step, not after it ...
                new_rows, new_past, new_mask, new_pos, new_last = self._prefill(waiting)
                waiting = []
                keep = [i for i, r in enumerate(new_rows) if not r.done]
                if keep:
                    index = torch.tensor(keep, device=new_mask.device)
                    if len(keep) < len(new_rows):
                        new_past.batch_select_indices(index)
                    new_rows = [new_rows[i] for i in keep]
                    new_mask, new_pos, new_last = new_mask[index], new_pos[index], new_last[index]
                    if rows:
                        past, mask = _merge(past, mask, new_past, new_mask)
                        pos, last = torch.cat([pos, new_pos]), torch.cat([last, new_last])
                    else:
                        past, mask, pos, last = new_past, new_mask, new_pos, new_last
                    rows = rows + new_rows
                token_at = token_at or time.perf_counter()
                if rows and self._step_s and time.perf_counter() - token_at > self.hold_steps * self._step_s:
                    break  # ... until the running rows have waited hold_steps decoding steps (once one is timed)
                waiting = self._arrivals(self.max_batch - len(rows))  # none once the batch is full
            self.busy = len(rows)
            if not rows:
                return

    def _arrivals(self, room: int) -> list[GenRequest]:
        """Requests that came in while the batch ran (no waiting: the batch is busy already)."""
        out = []
        while len(out) < room:
            try:
                r = self.queue.get_nowait()
            except queue.Empty:
                break
            if r.future.set_running_or_notify_cancel():
                out.append(r)
        self._admitted.extend(out)
        return out

    def _prefill(self, batch: list[GenRequest]) -> tuple[list[_Row], Any, Any, Any, Any]:
        """The prompts of newly admitted requests, left-padded together; their first tokens taken."""
        torch = self._torch
        self.stats["requests"] += len(batch)
        rows = []
        now = time.perf_counter()
        for r in batch:
            r.admitted = now
            gen = None
            if r.temperature > 0:
                gen = torch.Generator()
                gen.manual_seed(r.seed if r.seed is not None else int(time.time_ns() % 2**31))
            rows.append(_Row(r, generator=gen))
        width = max(len(r.prompt_ids) for r in batch)
        device = self.model.device
        ids = torch.tensor([[self.pad_id] * (width - len(r.prompt_ids)) + r.prompt_ids for r in batch], device=device)
        mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in batch], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad(), self.lock:
            with self._adapter_setup(batch):  # one adapter: rows of similar lengths prefilled together (generate.py)
                grouped = len({r.adapter for r in batch}) == 1
                logits, past = prefill(self.model, ids, mask, positions, width + kvcache.GROW, grouped=grouped)
            picks = self._pick(logits, rows)
        self._count(rows)
        self._take(rows, picks)
        return (
            rows,
            past,
            mask,
            mask.sum(-1, keepdim=True),
            torch.tensor([[t] for t in picks], device=device),
        )

    def _count(self, rows: list[_Row]) -> None:
        self.stats["max_batch_seen"] = max(self.stats["max_batch_seen"], len(rows))
        if len({r.req.adapter for r in rows}) > 1:
            self.stats["mixed_batches"] += 1

    def _take(self, rows: list[_Row], picks: list[int]) -> None:
        """Each row's new token: kept, or the end of the row (stop token, stop string, length, deadline)."""
        now = time.perf_counter()
        for row, token in zip(rows, picks):
            if row.done:
                continue
            if row.req.first_token is None:
                row.req.first_token = now
            if token in self.stop_ids:
                row.done = "stop"
            else:
                row.ids.append(token)
                if row.req.on_text or row.req.stop:  # otherwise the text is decoded once, at the end
                    self._emit(row)
                if row.done is None and len(row.ids) >= row.req.max_tokens:
                    row.done = "length"
            if row.done is None and now > row.req.deadline:
                row.done = "timeout"
            if row.done:
                self._finish(row)

    def _adapter_setup(self, batch: list[GenRequest]) -> Any:
        """The context to run the batch's forward pass in (`multilora.rows`): one adapter for the whole batch runs
        peft's arithmetic without its per-call overhead (1.07x tokens/s at one client in bf16, 1.14x in fp32); several
        get one adapter per row. peft's active adapter is switched only when the batch needs another setting than the
        last step's: its `set_adapter` walks every module (8 ms a step for SmolLM2-135M, 2 cores) and its
        `disable_adapter()` context twice as long, each step, where a decoding step takes 45-120 ms (docs/benchmarks.md)."""
        import contextlib

        if not self.peft:
            return contextlib.nullcontext()
        names = {r.adapter for r in batch}
        one = names.pop() if len(names) == 1 else None
        if one == BASE:
            if self._layers != BASE:
                self.model.base_model.disable_adapter_layers()
                self._layers = BASE
            return contextlib.nullcontext()
        if self._layers == BASE:
            self.model.base_model.enable_adapter_layers()
            self._layers = None
        if one is not None:
            if self._layers != one:  # peft's active adapter, for whatever else it selects
                self.model.set_adapter(one)
                self._layers = one
            return multilora.rows(self.model, one)
        return multilora.rows(self.model, [r.adapter for r in batch])

    def _finish(self, row: _Row) -> None:
        self._emit(row)
        if not row.req.future.done():
            r = row.req
            # seconds from the queue to the prefill and to the first token, in the engine
            queued, first = (r.admitted or r.enqueued) - r.enqueued, (r.first_token or time.perf_counter()) - r.enqueued
            self.timings.append((queued, first))
            r.future.set_result(
                {
                    "text": row.text,
                    "completion_tokens": len(row.ids),
                    "finish_reason": row.done,
                    "prompt_tokens": len(r.prompt_ids),
                    "queued_s": queued,
                    "first_token_s": first,
                }
            )


def _merge(past: Any, mask: Any, new_past: Any, new_mask: Any) -> tuple[Any, Any]:
    """Join newly prefilled rows to the running batch: both caches left-padded to one length, then stacked."""
    import torch

    length, new_length = mask.shape[1], new_mask.shape[1]
    if new_length < length:
        new_past, new_mask = _pad_left(new_past, new_mask, length - new_length)
    elif length < new_length:
        past, mask = _pad_left(past, mask, new_length - length)
    for layer, new in zip(past.layers, new_past.layers):
        layer.keys = torch.cat([layer.keys, new.keys], dim=0)
        layer.values = torch.cat([layer.values, new.values], dim=0)
    return past, torch.cat([mask, new_mask], dim=0)


def _pad_left(past: Any, mask: Any, n: int) -> tuple[Any, Any]:
    import torch

    for layer in past.layers:
        shape = list(layer.keys.shape)
        shape[-2] = n
        layer.keys = torch.cat([layer.keys.new_zeros(shape), layer.keys], dim=-2)
        layer.values = torch.cat([layer.values.new_zeros(shape[:-1] + [layer.values.shape[-1]]), layer.values], dim=-2)
    return past, torch.cat([mask.new_zeros(mask.shape[0], n), mask], dim=1)


def _trim(past: Any, mask: Any) -> tuple[Any, Any]:
    """Drop leading columns that are padding in every remaining row (left by rows that finished)."""
    used = mask.any(dim=0).nonzero()
    first = int(used[0]) if len(used) else 0
    if first == 0:
        return past, mask
    for layer in past.layers:
        layer.keys = layer.keys[..., first:, :]
        layer.values = layer.values[..., first:, :]
    return past, mask[:, first:]
