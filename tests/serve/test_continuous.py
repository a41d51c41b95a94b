"""Continuous batching in the engine: requests that arrive while a long generation runs join its
batch at the next step, finish before it, and answer exactly as they do alone (greedy, fp32)."""

from __future__ import annotations

import threading
import time

import pytest

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


def test_switching_between_the_base_and_adapters_answers_as_each_alone(tmp_path, tiny_model_dir):
    """The engine leaves the LoRA layers as the last batch set them (disabled for the base model, or one
    adapter active) and switches only when a batch needs another setting; every answer stays its model's own,
    also for an adapter added while the layers are disabled, and refuses one it cannot apply."""
    from peft import LoraConfig, PeftModel, get_peft_model

    from tunesmith.errors import TunesmithError
    from tunesmith.models import load_model, load_tokenizer
    from tunesmith.serve.engine import BASE, Engine, GenRequest

    alpha = _adapter(tiny_model_dir, tmp_path / "alpha", 1)
    beta = _adapter(tiny_model_dir, tmp_path / "beta", 2)
    tok = load_tokenizer(str(tiny_model_dir))
    ids = tok("Tell me about the weather", add_special_tokens=False)["input_ids"]

    def answer(engine: Engine, adapter: str) -> str:
        return engine.submit(GenRequest(ids, adapter=adapter, max_tokens=16)).result(timeout=60)["text"]

    def alone(adapter: str) -> str:  # a model that holds only this one
        model = load_model(str(tiny_model_dir))
        if adapter != BASE:
            model = PeftModel.from_pretrained(model, str(tmp_path / adapter), adapter_name=adapter)
        engine = Engine(model, tok).start()
        try:
            return answer(engine, adapter)
        finally:
            engine.close()

    expected = {name: alone(name) for name in (BASE, "alpha", "beta")}
    assert len(set(expected.values())) == 3
    model = PeftModel.from_pretrained(load_model(str(tiny_model_dir)), str(alpha), adapter_name="alpha")
    engine = Engine(model, tok, batch_wait_s=0.0).start()
    try:
        for name in (BASE, "alpha", BASE, BASE, "alpha", "alpha", BASE):
            assert answer(engine, name) == expected[name], name
        engine.add_adapter("beta", str(beta))  # while the last batch left the layers disabled
        for name in ("beta", BASE, "alpha", "beta"):
            assert answer(engine, name) == expected[name], name
        embeddings = tmp_path / "embeddings"  # LoRA on the embeddings: the engine's rows would skip it
        get_peft_model(
            load_model(str(tiny_model_dir)), LoraConfig(r=4, target_modules=["embed_tokens"])
        ).save_pretrained(str(embeddings))
        with pytest.raises(TunesmithError, match="not a linear layer"):
            engine.add_adapter("gamma", str(embeddings))
        assert engine.adapters == ["alpha", "beta"]  # refused whole: the others answer as before
        for name in ("alpha", BASE, "beta"):
            assert answer(engine, name) == expected[name], name
    finally:
        engine.close()
    engine = Engine(load_model(str(tiny_model_dir)), tok).start()  # a server that started with the base alone
    try:
        with pytest.raises(TunesmithError, match="not a linear layer"):
            engine.add_adapter("gamma", str(embeddings))
        assert engine.adapters == [] and answer(engine, BASE) == expected[BASE]
    finally:
        engine.close()


def test_a_request_arriving_during_a_prefill_is_prefilled_before_the_next_step(tiny_model_dir):
    """Requests that arrive while others are prefilled (a burst of closed-loop clients) are prefilled at once
    too, instead of waiting for a decoding step of the batch first; the answers stay each one's own."""
    from tunesmith.models import load_model, load_tokenizer
    from tunesmith.serve.engine import Engine, GenRequest

    tok = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir))

    def ask(text: str) -> GenRequest:
        return GenRequest(tok(text, add_special_tokens=False)["input_ids"], max_tokens=6, temperature=0.0)

    engine = Engine(model, tok, batch_wait_s=0.0).start()
    try:
        alone = [engine.submit(ask(t)).result(timeout=60)["text"] for t in ("Tell me a story", "Name a colour")]
    finally:
        engine.close()
    engine = Engine(model, tok, batch_wait_s=0.0)
    events, late = [], []
    prefill, forward = engine._prefill, model.forward

    def prefill_and_arrive(batch):
        events.append("prefill")
        if not late:  # the second request comes in while the first is prefilled
            late.append(engine.submit(ask("Name a colour")))
        return prefill(batch)

    def counted(*args, **kwargs):
        if kwargs.get("past_key_values") is not None and kwargs["input_ids"].shape[1] == 1:
            events.append("step")
        return forward(*args, **kwargs)

    engine._prefill, model.forward = prefill_and_arrive, counted
    engine.start()
    try:
        first = engine.submit(ask("Tell me a story")).result(timeout=60)["text"]
        assert [first, late[0].result(timeout=60)["text"]] == alone
    finally:
        engine.close()
        del model.forward
    assert events[:3] == ["prefill", "prefill", "step"], events


def test_off_this_thread_runs_in_a_thread_that_ends_and_hands_back_its_outcome():
    import pytest

    from tunesmith.serve.threads import off_this_thread

    here = threading.get_ident()
    ran = off_this_thread(lambda: threading.current_thread())
    assert ran.ident != here and not ran.is_alive()  # its OpenMP team, if any, ended with it
    with pytest.raises(KeyError, match="missing"):
        off_this_thread({}.__getitem__, "missing")


def test_prefills_hold_the_running_rows_for_two_decoding_steps_at_most(tiny_model_dir):
    """A stream of arrivals, each coming in while the last is prefilled, is prefilled before the next step only
    until the running rows have waited two decoding steps' time (`hold_steps`); then they take a step. Without the hold
    (`hold_steps` infinite) every prefill in the stream comes first. The answers stay each one's own."""
    import time

    from tunesmith.models import load_model, load_tokenizer
    from tunesmith.serve.engine import Engine, GenRequest

    tok = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir))
    texts = ["Tell me a story", "Name a colour", "Count to three", "Say hello", "Pick a fruit"]

    def ask(text: str) -> GenRequest:
        return GenRequest(tok(text, add_special_tokens=False)["input_ids"], max_tokens=6, temperature=0.0)

    engine = Engine(model, tok, batch_wait_s=0.0).start()
    try:
        alone = [engine.submit(ask(t)).result(timeout=60)["text"] for t in texts]
    finally:
        engine.close()

    def run(hold_steps: float | None) -> list[str]:
        engine = Engine(model, tok, batch_wait_s=0.0)
        engine._step_s = 0.02  # a decoding step timed at 20 ms
        if hold_steps is not None:
            engine.hold_steps = hold_steps
        events, late = [], []
        prefill, forward = engine._prefill, model.forward

        def slow_prefill(batch):
            events.append("prefill")
            if len(late) < len(texts) - 1:  # the next request comes in during this prefill
                late.append(engine.submit(ask(texts[len(late) + 1])))
            time.sleep(0.1)
            return prefill(batch)

        def counted(*args, **kwargs):
            if kwargs.get("past_key_values") is not None and kwargs["input_ids"].shape[1] == 1:
                events.append("step")
                engine._step_s = 0.02  # as timed, whatever this machine's tiny step takes
            return forward(*args, **kwargs)

        engine._prefill, model.forward = slow_prefill, counted
        engine.start()
        try:
            first = engine.submit(ask(texts[0])).result(timeout=60)["text"]
            assert [first] + [f.result(timeout=60)["text"] for f in late] == alone
        finally:
            engine.close()
            del model.forward
        return events

    unbounded = run(float("inf"))
    assert unbounded[:6] == ["prefill"] * 5 + ["step"], unbounded
    held = run(None)  # the first prefill's rows wait through one more 100 ms prefill (over 2 x 20 ms), then step
    assert held[:6] == ["prefill", "prefill", "step", "prefill", "step", "prefill"], held


def test_a_burst_of_arrivals_is_prefilled_in_groups_of_similar_lengths_and_answers_as_alone(tiny_model_dir):
    """More requests than `generate.PREFILL_ROWS` arriving together, for one model: their prompts go through the
    model in groups of similar lengths, each padded to its own longest (models/generate.prefill), and every
    answer is the one the request gets alone (greedy, fp32)."""
    from tunesmith.models import load_model, load_tokenizer
    from tunesmith.models.generate import PREFILL_ROWS
    from tunesmith.serve.engine import Engine, GenRequest

    tok = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir))
    prompts = [f"Question {n}: " + "tell me more " * (n % 5) * 6 for n in range(PREFILL_ROWS + 4)]
    engine = Engine(model, tok, max_batch=32, batch_wait_s=0.5).start()
    widths, forward = [], model.forward

    def recorded(*args, **kwargs):
        widths.append(tuple(kwargs["input_ids"].shape))
        return forward(*args, **kwargs)

    def ask(text: str):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        return engine.submit(GenRequest(ids, max_tokens=12, temperature=0.0))

    try:
        alone = [ask(text).result(timeout=60)["text"] for text in prompts]
        model.forward = recorded
        together = [ask(text) for text in prompts]
        assert [f.result(timeout=60)["text"] for f in together] == alone
    finally:
        engine.close()
        time.sleep(0.1)
    prefills = [shape for shape in widths if shape[1] > 1]
    assert sum(rows for rows, _ in prefills) == len(prompts) and all(rows <= PREFILL_ROWS for rows, _ in prefills)
    longest = max(len(tok(text, add_special_tokens=False)["input_ids"]) for text in prompts)
    assert min(width for _, width in prefills) < longest  # a group of short prompts not padded to the longest
