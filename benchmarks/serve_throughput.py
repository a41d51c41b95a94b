"""Serving throughput: a naive one-at-a-time generate loop vs tunesmith's batching server, and
the cost of mixing 4 adapters in one batch vs 1 adapter.

All in one process, rounds alternating (naive, server with 1 adapter, server with 4 adapters),
each round recording the CPU share other processes took (/proc/stat); rounds where others
took more than --max-other-load are dropped, and medians are reported. Every request asks for
exactly --tokens new tokens (end-of-turn ignored, as vLLM's benchmarks do with ignore_eos), so
throughput compares equal work.

  (a) naive:  `model.generate` for one request at a time, the clients' requests in turn
  (b) server: N concurrent clients (the official openai client) against the real server

Run: python benchmarks/serve_throughput.py [--model smollm2-135m-instruct|tiny] [--clients 8]
Targets (issue 5): (b)/(a) >= 3x at 8 clients; 4 mixed adapters within 1.3x of 1 adapter.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cpuload import OtherLoad  # noqa: E402

PROMPTS = ["Write a short note about the weather.", "Explain what a router does.", "Describe a cat in a sentence.",
           "Give advice for a job interview.", "What makes a good password?", "Summarise why sleep matters.",
           "Describe the sea.", "Tell me about trains."]


def make_adapters(base: str, folder: Path, count: int) -> dict[str, str]:
    import torch
    from peft import LoraConfig, get_peft_model

    from tunesmith.models import load_model, load_tokenizer

    out = {}
    for i in range(count):
        torch.manual_seed(i)
        model = get_peft_model(load_model(base), LoraConfig(r=16, lora_alpha=32, init_lora_weights=False,
                                                            target_modules="all-linear"))
        path = folder / f"a{i}"
        model.save_pretrained(str(path))
        load_tokenizer(base).save_pretrained(str(path))
        out[f"a{i}"] = str(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="base model, or 'tiny'")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-other-load", type=float, default=0.15)
    args = parser.parse_args()

    import openai
    import torch
    import yaml

    from tunesmith.config import load_config
    from tunesmith.evaluate.metrics import p95
    from tunesmith.serve.stage import build_app, start_in_thread

    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    base = args.model
    if base == "tiny":
        from tunesmith.models.tiny import make_tiny_model

        base = str(make_tiny_model(work / "tiny", hidden_size=256, num_layers=4))
    adapters = make_adapters(base, work, 4)
    config = work / "tunesmith.yaml"
    config.write_text(yaml.safe_dump({"base_model": base, "output_dir": "out",
                                      "data": {"datasets": [{"path": "d.jsonl"}]},
                                      "serve": {"adapters": adapters, "max_batch_size": args.clients,
                                                "batch_wait_ms": 20, "max_queue": 256}}))
    cfg = load_config(config)
    running = start_in_thread(build_app(cfg))
    engine = running.app.state.engine
    engine.stop_ids = set()  # every request generates exactly --tokens tokens
    model, tokenizer = engine.model, engine.tokenizer
    client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="none", max_retries=0, timeout=600)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.clients)]

    def naive() -> list[float]:
        latencies = []
        model.set_adapter("a0")
        for p in prompts:
            ids = tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                return_tensors="pt", return_dict=True)
            began = time.perf_counter()
            with torch.no_grad():
                model.generate(**ids, max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False,
                               pad_token_id=tokenizer.pad_token_id)
            latencies.append(time.perf_counter() - began)
        return latencies

    def server(names: list[str]) -> list[float]:
        def one(i: int) -> float:
            began = time.perf_counter()
            answer = client.chat.completions.create(model=names[i % len(names)], max_tokens=args.tokens,
                                                    temperature=0,
                                                    messages=[{"role": "user", "content": prompts[i]}])
            assert answer.usage.completion_tokens == args.tokens, answer.usage
            return time.perf_counter() - began
        with ThreadPoolExecutor(args.clients) as pool:
            return list(pool.map(one, range(args.clients)))

    modes = {"naive": naive, "server_1_adapter": lambda: server(["a0"]),
             "server_4_adapters": lambda: server(["a0", "a1", "a2", "a3"])}
    server(["a0"])  # warm-up
    results: dict[str, list[dict]] = {m: [] for m in modes}
    dropped = 0
    for r in range(args.rounds):
        for name, fn in modes.items():
            with OtherLoad() as load:
                began = time.perf_counter()
                latencies = fn()
                wall = time.perf_counter() - began
            row = {"tok_s": args.clients * args.tokens / wall, "p50": statistics.median(latencies),
                   "p95": p95(latencies),
                   "other_load": load.share}
            print(f"round {r + 1} {name:18s} {row['tok_s']:8.1f} tok/s  p50 {row['p50']:.2f}s  p95 {row['p95']:.2f}s"
                  f"  others {load.share:.0%}" + ("  (dropped)" if load.share > args.max_other_load else ""), flush=True)
            if load.share > args.max_other_load:
                dropped += 1
                continue
            results[name].append(row)
    running.stop()
    med = {m: {k: statistics.median(r[k] for r in rows) for k in ("tok_s", "p50", "p95")} if rows else None
           for m, rows in results.items()}
    print(f"\nmodel {args.model}, {args.clients} clients, {args.tokens} tokens each, {args.rounds} rounds, "
          f"{dropped} dropped (other load > {args.max_other_load:.0%}); medians:")
    for m, v in med.items():
        print(f"  {m:18s} " + ("no clean rounds" if v is None else
                               f"{v['tok_s']:8.1f} output tok/s   p50 {v['p50']:.2f} s   p95 {v['p95']:.2f} s"))
    if all(med.values()):
        print(f"server batching / naive loop: {med['server_1_adapter']['tok_s'] / med['naive']['tok_s']:.2f}x "
              "(target >= 3x)")
        print(f"1 adapter / 4 mixed adapters:  {med['server_1_adapter']['tok_s'] / med['server_4_adapters']['tok_s']:.2f}x "
              "slower when mixed (target <= 1.3x)")


if __name__ == "__main__":
    main()
