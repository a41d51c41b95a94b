"""The built-in engine at one client, with a LoRA adapter as `tunesmith serve` runs it: the served model loaded
in the thread that then starts the engine, against loaded in a thread that ends first
(`serve/threads.off_this_thread`, what `tunesmith serve` does).

torch's OpenMP (libgomp) keeps a team of worker threads for each thread that has run parallel work; once the
workers outnumber the cores, it spins 100 times instead of 300,000 before sleeping, and the engine thread's
decoding steps wait on each wake-up. Each arm runs in a process of its own (the teams are the process's),
rounds alternate between the arms, each recording the CPU share other processes took (/proc/stat); rounds
where others took more than --max-other-load are dropped and medians are reported. Requests go to
`Engine.submit` one at a time, first to the base model on the same server, then to the adapter.

Run: python benchmarks/serve_threads.py ADAPTER_FOLDER [--rounds 2] [--precision bf16|fp32]
(ADAPTER_FOLDER: a trained LoRA adapter, e.g. the demo's examples/support-tickets-json/outputs/train/model)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cpuload import cpu_flags, run_arm  # noqa: E402
from serve_throughput import PROMPTS  # noqa: E402

ARMS = {"loaded in the engine's starting thread": "here", "loaded in a thread that ends": "off"}


def arm(where: str, folder: str, base: str, precision: str, tokens: int) -> dict:
    """One arm, in this process: load, start the engine, send the requests one at a time."""
    import torch
    from peft import PeftModel

    from tunesmith.models import load_model, load_tokenizer
    from tunesmith.serve.engine import BASE, Engine, GenRequest
    from tunesmith.serve.threads import off_this_thread

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    tokenizer = load_tokenizer(folder)

    def build() -> Engine:
        model = PeftModel.from_pretrained(load_model(base, dtype=dtype), folder, adapter_name="tuned").eval()
        return Engine(model, tokenizer, max_batch=8)

    engine = (build() if where == "here" else off_this_thread(build)).start()
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        for text in PROMPTS
    ]
    engine.submit(GenRequest(prompt_ids=prompts[0], adapter="tuned", max_tokens=4)).result()  # warm-up
    out = {}
    for adapter in (BASE, "tuned"):
        began, count = time.perf_counter(), 0
        for ids in prompts:
            count += engine.submit(GenRequest(prompt_ids=ids, adapter=adapter, max_tokens=tokens)).result()[
                "completion_tokens"
            ]
        out[adapter] = {"tokens_per_s": count / (time.perf_counter() - began), "tokens": count}
    engine.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("adapter", help="a trained LoRA adapter's folder")
    parser.add_argument("--base", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--max-other-load", type=float, default=0.25)
    parser.add_argument("--arm", choices=sorted(ARMS.values()), help=argparse.SUPPRESS)  # a child process's arm
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(arm(args.arm, args.adapter, args.base, args.precision, args.tokens)))
        return

    print(f"CPU flags: {' '.join(cpu_flags())}; {args.precision}; {len(PROMPTS)} requests of {args.tokens} tokens")
    kept: dict[str, list[dict]] = {name: [] for name in ARMS}
    for rnd in range(args.rounds):
        for name, where in ARMS.items():
            cmd = [sys.executable, __file__, args.adapter, "--arm", where, "--base", args.base]
            cmd += ["--precision", args.precision, "--tokens", str(args.tokens)]
            row, share, keep = run_arm(cmd, args.max_other_load)
            status = "kept" if keep else "dropped (others' load)"
            speeds = ", ".join(f"{k}: {v['tokens_per_s']:.1f} tok/s ({v['tokens']} tokens)" for k, v in row.items())
            print(f"round {rnd + 1}, {name}: {speeds}; others {share:.0%}: {status}", flush=True)
            if keep:
                kept[name].append(row)
    if not all(kept.values()):
        raise SystemExit("every round of an arm was dropped for others' load; run again on a quieter machine")
    for adapter in ("__base__", "tuned"):
        before, after = (statistics.median(r[adapter]["tokens_per_s"] for r in kept[name]) for name in ARMS)
        print(f"{adapter}: median {before:.1f} -> {after:.1f} tokens/s ({after / before:.2f}x)")


if __name__ == "__main__":
    main()
