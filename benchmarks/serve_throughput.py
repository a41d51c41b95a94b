"""Serving throughput and time to first token: a naive one-at-a-time generate loop vs tunesmith's
continuously batching server, and the cost of mixing 4 adapters in one batch vs 1 adapter.

All in one process, rounds alternating (naive, server with 1 adapter, server with 4 adapters),
each round recording the CPU share other processes took (/proc/stat); rounds where others
took more than --max-other-load are dropped, and medians are reported. Every request asks for
an exact number of new tokens (end-of-turn ignored, as vLLM's benchmarks do with ignore_eos),
so throughput compares equal work: --tokens each, or with --mixed a cycle of 16/32/64/128 new
tokens over prompts of different lengths, so that requests leave the running batch at different
steps and new ones join it.

  (a) naive:  `model.generate` for one request at a time, the clients' requests in turn, in a process
      of its own with the same served model (base and adapter a0, unmerged): torch keeps an OpenMP team
      for each thread that has run it, and a second team in the server's process slows both sides
  (b) server: N concurrent streaming clients (the official openai client) against the real server,
      their first requests --stagger seconds apart; time to first token (TTFT) and the gaps between
      tokens are read from the stream. The clients run in a process of their own, as real clients do:
      in the server's process their threads would compete with the engine for the GIL (the engine
      releases and takes it back around every torch op, thousands of times per decoding step).

The TTFT bound (issue 21): a request that arrives while a batch runs waits at most one decoding
step, then its own prefill. Measured in the same round: one decoding step = the median gap between
streamed tokens at that concurrency; the prefill = the TTFT of a request sent alone to the idle
server. The p50 TTFT under load is reported against their sum.

Run: python benchmarks/serve_throughput.py [--model smollm2-135m-instruct|tiny] [--clients 8,32] [--mixed]
     [--requests 2]
Targets: (b)/(a) >= 4x at 8 and 32 clients; 4 mixed adapters within 1.3x of 1 adapter; p50 TTFT
under the bound. Also reported: the p95 of each stream's longest gap between two tokens (a stall while
other requests are prefilled).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cpuload import OtherLoad  # noqa: E402

PROMPTS = [
    "Write a short note about the weather.",
    "Explain what a router does.",
    "Describe a cat in a sentence.",
    "Give advice for a job interview.",
    "What makes a good password?",
    "Summarise why sleep matters.",
    "Describe the sea.",
    "Tell me about trains.",
]
LONG = (
    " Please answer in plain words, for a reader who is new to the subject, and keep to the point"
    " without lists or headings."
)
MIXED_TOKENS = (16, 32, 64, 128)
B_SCALE = 0.25  # of the random LoRA B matrices (make_adapters)


def make_adapters(base: str, folder: Path, count: int) -> dict[str, str]:
    import torch
    from peft import LoraConfig, get_peft_model

    from tunesmith.models import load_model, load_tokenizer

    out = {}
    for i in range(count):
        torch.manual_seed(i)
        model = get_peft_model(
            load_model(base), LoraConfig(r=16, lora_alpha=32, init_lora_weights=False, target_modules="all-linear")
        )
        with torch.no_grad():  # random but mild: each adapter answers differently, in words; at full scale some
            for name, p in model.named_parameters():  # answered only end-of-turn tokens, which stream no text,
                if "lora_B" in name:  # so the clients' time to first token read several steps late
                    p.mul_(B_SCALE)
        path = folder / f"a{i}"
        model.save_pretrained(str(path))
        load_tokenizer(base).save_pretrained(str(path))
        out[f"a{i}"] = str(path)
    return out


def start_server(model: str, prefix: str, adapters: int, max_batch: int) -> tuple[object, str, dict[str, str]]:
    """(the running server, its base model, its adapters' folders): `model` (or a tiny one for 'tiny') with
    `adapters` random adapters a0, a1, ..., in a scratch folder; every request makes exactly its max_tokens."""
    import yaml

    from tunesmith.config import load_config
    from tunesmith.serve.stage import build_app, start_in_thread
    from tunesmith.serve.threads import off_this_thread

    work = Path(tempfile.mkdtemp(prefix=prefix))
    base = model
    if base == "tiny":
        from tunesmith.models.tiny import make_tiny_model

        base = str(make_tiny_model(work / "tiny", hidden_size=256, num_layers=4))
    folders = off_this_thread(make_adapters, base, work, adapters)  # no OpenMP team left on this thread
    config = work / "tunesmith.yaml"
    serve = {"adapters": folders, "max_batch_size": max_batch, "max_queue": 256}
    config.write_text(
        yaml.safe_dump(
            {"base_model": base, "output_dir": "out", "data": {"datasets": [{"path": "d.jsonl"}]}, "serve": serve}
        )
    )
    running = start_in_thread(off_this_thread(build_app, load_config(config)))
    running.app.state.server.engine.stop_ids = set()  # every request generates exactly its max_tokens
    return running, base, folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="base model, or 'tiny'")
    parser.add_argument("--clients", default="8", help="concurrent clients, or a list: 8,32")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--mixed", action="store_true", help="mixed prompt and answer lengths (16-128 new tokens)")
    parser.add_argument(
        "--stagger",
        type=float,
        default=0.05,
        help="seconds between the clients' first requests, so that they arrive while a batch runs",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=1,
        help="requests each client sends in turn (closed loop): a finished one is replaced at once, so "
        "the batch stays full instead of draining to its longest request",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-other-load", type=float, default=0.15)
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]

    running, base, adapters = start_server(args.model, "serve-bench-", 4, max(counts))
    engine = running.app.state.server.engine
    spawn = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(1, mp_context=spawn) as clients_process,
        ProcessPoolExecutor(1, mp_context=spawn, initializer=_load_naive, initargs=(base, adapters["a0"])) as naive,
    ):
        client = _Clients(clients_process, f"{running.url}/v1")
        client.naive = naive
        client.naive_pid = naive.submit(os.getpid).result()
        for clients in counts:
            work_list = [
                (
                    PROMPTS[i % len(PROMPTS)] + (LONG * (i % 3) if args.mixed else ""),
                    MIXED_TOKENS[(i + i // clients) % len(MIXED_TOKENS)] if args.mixed else args.tokens,
                )
                for i in range(clients * args.requests)
            ]
            _measure(args, clients, work_list, engine, client)
    running.stop()


class _Clients:
    """The streaming clients, run in a process of their own (`pid`), whose CPU time counts as the benchmark's."""

    def __init__(self, pool: ProcessPoolExecutor, url: str) -> None:
        self.pool, self.url = pool, url
        self.pid = pool.submit(os.getpid).result()

    def server(self, names: list[str], work_list, clients: int, stagger: float = 0.0) -> dict:
        return self.pool.submit(_server, self.url, names, work_list, clients, stagger).result()

    def streamed(self, model: str, prompt: str, n: int) -> dict:
        return self.pool.submit(_streamed, self.url, model, prompt, n).result()


_clients: dict = {}


def _openai(url: str):
    # one client per server and process, kept across rounds (its connection pool stays warm)
    if url not in _clients:
        import openai

        _clients[url] = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=1200)
    return _clients[url]


_naive_model: dict = {}


def _load_naive(base: str, adapter: str) -> None:
    """The naive loop's process: the served model as the server loads it (base, adapter a0, unmerged)."""
    from peft import PeftModel

    from tunesmith.models import inference_dtype, load_model, load_tokenizer

    model = load_model(base, dtype=inference_dtype(base, "cpu"))  # the served precision (config default: auto)
    _naive_model["model"] = PeftModel.from_pretrained(model, adapter, adapter_name="a0").eval()
    _naive_model["tokenizer"] = load_tokenizer(base)


def _naive(work_list) -> dict:
    import torch

    model, tokenizer = _naive_model["model"], _naive_model["tokenizer"]
    latencies = []
    for prompt, n in work_list:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(model.device)
        began = time.perf_counter()
        with torch.no_grad():
            model.generate(
                **ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        latencies.append(time.perf_counter() - began)
    return {"latency": latencies}


def _streamed(url: str, model: str, prompt: str, n: int) -> dict:
    """One streaming request: its TTFT, the gaps between tokens, its latency, its token count."""
    began = time.perf_counter()
    times, usage = [], None
    for chunk in _openai(url).chat.completions.create(
        model=model,
        max_tokens=n,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": prompt}],
    ):
        if chunk.usage is not None:
            usage = chunk.usage
        elif chunk.choices and chunk.choices[0].delta.content:
            times.append(time.perf_counter())
    assert usage is not None and usage.completion_tokens == n, usage
    return {
        "ttft": times[0] - began,
        "gaps": [b - a for a, b in zip(times, times[1:])],
        "latency": time.perf_counter() - began,
    }


def _server(url: str, names: list[str], work_list, clients: int, stagger: float = 0.0) -> dict:
    def one(c: int) -> list[dict]:  # client c sends its requests one after another
        time.sleep(c * stagger)
        return [_streamed(url, names[i % len(names)], *work_list[i]) for i in range(c, len(work_list), clients)]

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        rows = [r for rs in pool.map(one, range(clients)) for r in rs]
    return {
        "wall": time.perf_counter() - began,
        "latency": [r["latency"] for r in rows],
        "ttft": [r["ttft"] for r in rows],
        "gap": statistics.median(g for r in rows for g in r["gaps"]),
        "stall": [max(r["gaps"], default=0.0) for r in rows],  # each stream's longest wait between tokens
    }


def _measure(args, clients: int, work_list, engine, client) -> None:
    from tunesmith.stats import p95

    total = sum(n for _, n in work_list)
    modes = {
        "naive": lambda: client.naive.submit(_naive, work_list).result(),
        "server_1_adapter": lambda: client.server(["a0"], work_list, clients, args.stagger),
        "server_4_adapters": lambda: client.server(["a0", "a1", "a2", "a3"], work_list, clients, args.stagger),
    }
    client.server(["a0"], work_list[:2], 2)  # warm-up
    client.naive.submit(_naive, work_list[:1]).result()
    results: dict[str, list[dict]] = {m: [] for m in modes}
    dropped = 0
    for r in range(args.rounds):
        alone = statistics.median(client.streamed("a0", *work_list[0])["ttft"] for _ in range(3))
        for name, fn in modes.items():
            engine.timings.clear()
            with OtherLoad(ours=(client.pid, client.naive_pid)) as load:
                began = time.perf_counter()
                out = fn()
                wall = time.perf_counter() - began
            row = {"tok_s": total / wall, "p50": statistics.median(out["latency"]), "p95": p95(out["latency"])}
            if "ttft" in out:
                row.update(
                    ttft_p50=statistics.median(out["ttft"]),
                    ttft_p95=p95(out["ttft"]),
                    gap=out["gap"],
                    bound=out["gap"] + alone,  # and the engine's own view: queue wait, first token
                    stall_p95=p95(out["stall"]),
                    engine_queued_p50=statistics.median(q for q, _ in engine.timings),
                    engine_ttft_p50=statistics.median(t for _, t in engine.timings),
                )
            extra = (
                (
                    f"  TTFT p50 {row['ttft_p50']:.2f}s (bound {row['bound']:.2f}s; in the engine "
                    f"{row['engine_ttft_p50']:.2f}s, queued {row['engine_queued_p50']:.2f}s)"
                    f"  longest gap p95 {row['stall_p95']:.2f}s"
                )
                if "ttft" in out
                else ""
            )
            print(
                f"{clients} clients round {r + 1} {name:18s} {row['tok_s']:8.1f} tok/s  p50 {row['p50']:.2f}s  "
                f"p95 {row['p95']:.2f}s{extra}  others {load.share:.0%}"
                + ("  (dropped)" if load.share > args.max_other_load else ""),
                flush=True,
            )
            if load.share > args.max_other_load:
                dropped += 1
                continue
            results[name].append(row)
    med = {
        m: {k: statistics.median(r[k] for r in rows) for k in rows[0]} if rows else None for m, rows in results.items()
    }
    print(
        f"\nmodel {args.model}, {clients} clients x {args.requests} requests, "
        f"{'mixed lengths' if args.mixed else f'{args.tokens} tokens'}"
        f", {args.rounds} rounds, {dropped} dropped (other load > {args.max_other_load:.0%}); medians:"
    )
    for m, v in med.items():
        ttft = (
            f"   TTFT p50 {v['ttft_p50']:.2f} s p95 {v['ttft_p95']:.2f} s (bound {v['bound']:.2f} s; "
            f"engine {v['engine_ttft_p50']:.2f} s, queued {v['engine_queued_p50']:.2f} s); "
            f"a stream's longest gap between tokens p95 {v['stall_p95']:.2f} s (median gap {v['gap']:.3f} s)"
            if v and "ttft_p50" in v
            else ""
        )
        print(
            f"  {m:18s} "
            + (
                "no clean rounds"
                if v is None
                else f"{v['tok_s']:8.1f} output tok/s   p50 {v['p50']:.2f} s   p95 {v['p95']:.2f} s{ttft}"
            )
        )
    if all(med.values()):
        print(
            f"server batching / naive loop: {med['server_1_adapter']['tok_s'] / med['naive']['tok_s']:.2f}x "
            "(target >= 4x)"
        )
        print(
            f"1 adapter / 4 mixed adapters:  {med['server_1_adapter']['tok_s'] / med['server_4_adapters']['tok_s']:.2f}x"
            " slower when mixed (target <= 1.3x)\n"
        )


if __name__ == "__main__":
    main()
