"""Serving engines on CPU: the built-in engine (transformers, continuous batching, the LoRA adapter
unmerged; in the default precision, the same on weights not prepacked for decoding (models/prepack.py), the same
on transformers' DynamicCache instead of models/kvcache.py's growing one, and with `serve.precision: fp32`) against
llama.cpp
(`serve.engine: llama-cpp`, the version merged into a GGUF, f16 and q8_0), each behind the same
tunesmith server, on the same prompts, at 1 and 8 concurrent clients.

One process; rounds alternate between the engines, one server at a time (an idle engine of another
kind in the same process slows the running one), each measurement recording the CPU share other
processes took (/proc/stat); measurements where others took more than --max-other-load are dropped,
and medians are reported with ratios to the built-in engine. Every request asks for
exactly --tokens new tokens (end-of-turn ignored, as vLLM's benchmarks do), so the engines do
equal work. The clients are the official openai client, streaming, in a process of their own
(benchmarks/serve_throughput.py says why); time to first token (TTFT) is read from the stream.

Run: python benchmarks/serve_engines.py [--clients 1,8] [--tokens 64] [--rounds 3] [--engines "built-in,..."]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).parent))
from cpuload import OtherLoad, cpu_flags  # noqa: E402
from serve_throughput import PROMPTS, _Clients  # noqa: E402

ENGINES = {
    "built-in": {},
    "built-in unpacked": {},  # its bf16 weights not prepacked for decoding (models/prepack.py)
    "built-in concatenated": {},  # transformers' DynamicCache (each step concatenates the cache), not kvcache.py's
    "built-in fp32": {"precision": "fp32"},  # serve.precision; the built-in's default here is bf16 (auto)
    "llama.cpp f16": {"engine": "llama-cpp", "gguf_quant": "f16"},
    "llama.cpp q8_0": {"engine": "llama-cpp", "gguf_quant": "q8_0"},
}


def concatenated(kvcache):
    """The engine's KV cache as transformers makes it: each decoding step concatenates the whole cache."""
    from transformers import DynamicCache

    return mock.patch.object(kvcache, "growing_cache", lambda model, capacity: DynamicCache(config=model.config))


def make_version(base: str, folder: Path) -> str:
    """A LoRA adapter with small non-zero weights on every linear layer: a fine-tune in shape."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tunesmith.models import load_model, load_tokenizer

    torch.manual_seed(0)
    model = get_peft_model(
        load_model(base), LoraConfig(r=16, lora_alpha=32, init_lora_weights=False, target_modules="all-linear")
    )
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data.mul_(0.05)
    model.save_pretrained(str(folder))
    load_tokenizer(base).save_pretrained(str(folder))
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-other-load", type=float, default=0.15)
    parser.add_argument("--engines", default=",".join(ENGINES), help="which of them, comma-separated")
    args = parser.parse_args()

    import yaml

    from tunesmith.config import load_config
    from tunesmith.models import kvcache, prepack
    from tunesmith.serve.stage import build_app, start_in_thread
    from tunesmith.serve.threads import off_this_thread

    work = Path(tempfile.mkdtemp(prefix="serve-engines-"))
    adapter = off_this_thread(make_version, args.model, work / "a0")
    counts = [int(c) for c in args.clients.split(",")]
    configs = {}
    engines = {name: ENGINES[name] for name in args.engines.split(",")}
    for name, serve in engines.items():
        folder = work / name.replace(" ", "-")
        folder.mkdir()
        (folder / "tunesmith.yaml").write_text(
            yaml.safe_dump(
                {
                    "base_model": args.model,
                    "output_dir": "out",
                    "data": {"datasets": [{"path": "d.jsonl"}]},
                    "serve": {"adapters": {"a0": adapter}, "max_batch_size": max(counts), "max_queue": 256, **serve},
                }
            )
        )
        configs[name] = load_config(folder / "tunesmith.yaml")
    print(f"CPU flags: {' '.join(cpu_flags())}; {args.model}, {args.tokens} new tokens per request", flush=True)
    rows: dict[tuple[str, int], list[dict]] = {(n, c): [] for n in engines for c in counts}
    dropped = 0
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        for r in range(args.rounds):
            for name, cfg in configs.items():
                with concatenated(kvcache) if "concatenated" in name else nullcontext():  # while it serves
                    # one server at a time: an idle engine of another kind in the same process slows this one
                    began = time.perf_counter()
                    # built off this thread: writing a GGUF runs torch, and a thread that has run torch keeps an
                    # OpenMP team, which slowed the built-in engine of later rounds 1.5x (docs/benchmarks.md)
                    with (
                        mock.patch.object(prepack, "install", lambda model: 0) if "unpacked" in name else nullcontext()
                    ):
                        running = start_in_thread(off_this_thread(build_app, cfg))
                    running.app.state.server.engine.stop_ids = set()  # every request generates exactly --tokens
                    if r == 0:
                        print(f"{name}: ready in {time.perf_counter() - began:.1f} s (GGUF written once)", flush=True)
                    client = _Clients(pool, f"{running.url}/v1")
                    client.server(["a0"], [(PROMPTS[0], 8)], 1)  # warm-up
                    for clients in counts:
                        work_list = [(PROMPTS[i % len(PROMPTS)], args.tokens) for i in range(clients * 2)]
                        with OtherLoad(ours=(client.pid,)) as load:
                            began = time.perf_counter()
                            out = client.server(["a0"], work_list, clients)
                            wall = time.perf_counter() - began
                        row = {"tok_s": len(work_list) * args.tokens / wall, "ttft": statistics.median(out["ttft"])}
                        noisy = load.share > args.max_other_load
                        print(
                            f"round {r + 1} {clients} clients {name:15s} {row['tok_s']:7.1f} tok/s  TTFT p50 "
                            f"{row['ttft']:.3f} s  others {load.share:.0%}" + ("  (dropped)" if noisy else ""),
                            flush=True,
                        )
                        if noisy:
                            dropped += 1
                        else:
                            rows[(name, clients)].append(row)
                    running.stop()
    for clients in counts:
        _report(clients, {n: rows[(n, clients)] for n in engines}, dropped, args)


def _report(clients: int, rows: dict[str, list[dict]], dropped: int, args: argparse.Namespace) -> None:
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} if rs else None for n, rs in rows.items()}
    base = med["built-in"]
    print(
        f"\n{clients} client(s), {args.rounds} rounds, {dropped} dropped in all; medians, ratio to the built-in engine:"
    )
    print("| engine | output tok/s | ratio | TTFT p50 | ratio |\n|---|---|---|---|---|")
    for name, v in med.items():
        if v is None or base is None:
            print(f"| {name} | no clean rounds | | | |")
            continue
        print(
            f"| {name} | {v['tok_s']:.1f} | {v['tok_s'] / base['tok_s']:.2f}× | {v['ttft']:.3f} s | "
            f"{v['ttft'] / base['ttft']:.2f}× |"
        )
    print(flush=True)


if __name__ == "__main__":
    main()
