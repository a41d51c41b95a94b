"""Continuous batching in the engine: requests that arrive while a long generation runs join its
batch at the next step, finish before it, and answer exactly as they do alone (greedy, fp32)."""

from __future__ import annotations

import threading
import time

from tests.serve.test_server import _adapter


def test_arrivals_join_the_running_batch_and_answer_as_alone(tmp_path, tiny_model_dir):
    from peft import PeftModel

    from tunesmith.models import load_model, load_tokenizer
    from tunesmith.serve.engine import BASE, Engine, GenRequest

    alpha = _adapter(tiny_model_dir, tmp_path / "alpha", 1)
    beta = _adapter(tiny_model_dir, tmp_path / "beta", 2)
    tok = load_tokenizer(str(tiny_model_dir))
    model = PeftModel.from_pretrained(load_model(str(tiny_model_dir)), str(alpha), adapter_name="alpha")
    model.load_adapter(str(beta), adapter_name="beta")
    engine = Engine(model, tok, max_batch=8, batch_wait_s=0.0).start()
    prompts = [
        (f"Tell me about item {n} " + "please " * n, adapter)
        for n, adapter in enumerate(["alpha", "beta", BASE, "alpha", "beta"])
    ]

    def ask(text: str, adapter: str, max_tokens: int = 20, on_text=None) -> GenRequest:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return GenRequest(ids, adapter=adapter, max_tokens=max_tokens, temperature=0.0, on_text=on_text)

    try:
        alone = []
        for text, adapter in prompts:
            alone.append(engine.submit(ask(text, adapter)).result(timeout=60)["text"])
        assert len(set(alone)) > 2  # the adapters and prompts lead to different answers
        started = threading.Event()
        pieces = []

        def on_text(piece: str) -> None:
            pieces.append(piece)
            if len(pieces) >= 5:
                started.set()

        long = engine.submit(ask("A long story, please", "alpha", max_tokens=400, on_text=on_text))
        assert started.wait(60)
        batches = engine.stats["batches"]  # the long one's batch is running now
        joined = [engine.submit(ask(text, adapter)) for text, adapter in prompts]
        answers = [f.result(timeout=60)["text"] for f in joined]
        assert not long.done()  # they finished while the long one was still generating
        assert answers == alone
        assert long.result(timeout=120)["completion_tokens"] > 20
        assert engine.stats["batches"] == batches  # they joined the running batch: no new one was started
        assert engine.stats["mixed_batches"] > 0 and engine.stats["max_batch_seen"] >= 4
    finally:
        engine.close()
        time.sleep(0.1)
