"""Work run off the calling thread, for the built-in engine's sake (OpenMP keeps a team per thread)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def off_this_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` run in a thread that ends when it returns; its result, or its exception raised here.

    torch runs its CPU operations on OpenMP (libgomp), which keeps a team of worker threads for each thread
    that has run parallel work. Once those workers outnumber the cores, libgomp waits for work with 100 spins
    instead of 300,000 before sleeping (its GOMP_SPINCOUNT documentation), and each of a decoding step's many
    small parallel operations waits for a worker to wake. Loading a LoRA adapter forms such a team: the demo's
    fine-tune served one request at a time at 8.1-8.4 tokens/s when loaded in the thread that started the
    engine, 13.0-13.7 when loaded in one that ended (bf16, 2 cores). A thread that ends takes its team with it,
    so whatever loads weights for the engine (the served model, adapters added while serving) runs here and
    the engine's own thread keeps the only team."""
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=call, name="tunesmith-load")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
