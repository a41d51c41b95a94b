"""The evaluation's per-request latency of a fine-tuned adapter against what the built-in server takes for the
same requests at one client: is the figure the latency gate and the cost use the one a user will see?

The same 8 test prompts the evaluation times (`evaluate/latency.spread` over the test split), greedy, up to
`eval.max_new_tokens`, through four paths:
  merged   the adapter merged into the base weights (what `eval.merge_adapter: auto` does in fp32)
  peft     unmerged, peft's own forward
  rows     unmerged, `models/multilora.rows` (the evaluation's way since the latency is timed unmerged)
  server   `Engine.submit` one request at a time, the engine built off its thread as `tunesmith serve` does
Each arm runs in a process of its own (torch's OpenMP teams are per process: docs/benchmarks.md), rounds
alternate the arms' order, each recording the CPU share other processes took (/proc/stat); rounds above
--max-other-load are dropped; the medians of each round's mean seconds a request are reported, and their
ratio to the server's.

Run: python benchmarks/eval_latency.py PROJECT/tunesmith.yaml [--precision bf16|fp32] [--rounds 3]
(a project trained with a LoRA adapter, e.g. the demo's examples/support-tickets-json after `make demo`)
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

ARMS = ("merged", "peft", "rows", "server")


def arm(name: str, config: str, precision: str) -> list[float]:
    """One arm, in this process: each request's seconds."""
    import contextlib

    from peft import PeftModel

    from tunesmith.config.loading import load_config
    from tunesmith.evaluate.latency import spread
    from tunesmith.evaluate.plan import plan_eval
    from tunesmith.models import inference_dtype, load_model, load_tokenizer, resolve_model
    from tunesmith.models.generate import time_request
    from tunesmith.models.multilora import install, rows
    from tunesmith.paths import train_dir

    cfg = load_config(config, [f"train.precision={precision}"])
    sample = spread(plan_eval(cfg).passes["fine_tuned"], cfg.eval.latency_requests)
    folder, tokens = str(train_dir(cfg) / "model"), cfg.eval.max_new_tokens
    dtype = inference_dtype(cfg.base_model, "cpu", precision)
    tokenizer = load_tokenizer(folder)

    def peft_model() -> PeftModel:
        return PeftModel.from_pretrained(load_model(resolve_model(cfg.base_model), dtype=dtype), folder).eval()

    if name != "server":
        model, context = peft_model(), contextlib.nullcontext
        if name == "merged":
            model = model.merge_and_unload()
        elif name == "rows":
            install(model)
            context = lambda: rows(model, "default")  # noqa: E731
        with context():
            time_request(model, tokenizer, sample[0], max_new_tokens=2)  # warm-up
            return [time_request(model, tokenizer, p, max_new_tokens=tokens)[0] for p in sample]
    from tunesmith.serve.engine import Engine, GenRequest
    from tunesmith.serve.threads import off_this_thread

    engine = off_this_thread(lambda: Engine(peft_model(), tokenizer, max_batch=8)).start()
    plain = [[{"role": m["role"], "content": m["content"]} for m in p] for p in sample]
    ids = [
        tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        for p in plain
    ]
    engine.submit(GenRequest(prompt_ids=ids[0], adapter="default", max_tokens=2)).result()  # warm-up
    seconds = []
    for prompt in ids:
        began = time.perf_counter()
        engine.submit(GenRequest(prompt_ids=prompt, adapter="default", max_tokens=tokens)).result()
        seconds.append(time.perf_counter() - began)
    engine.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="a project trained with a LoRA adapter")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--max-other-load", type=float, default=0.25)
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # a child process's arm
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(arm(args.arm, args.config, args.precision)))
        return

    print(f"CPU flags: {' '.join(cpu_flags())}; {args.precision}")
    kept: dict[str, list[float]] = {name: [] for name in ARMS}
    for rnd in range(args.rounds):
        for name in ARMS if rnd % 2 == 0 else ARMS[::-1]:
            cmd = [sys.executable, __file__, args.config, "--arm", name, "--precision", args.precision]
            seconds, share, keep = run_arm(cmd, args.max_other_load)
            mean = statistics.mean(seconds)
            status = "kept" if keep else "dropped (others' load)"
            print(f"round {rnd + 1}, {name}: {mean:.3f} s a request; others {share:.0%}: {status}", flush=True)
            if keep:
                kept[name].append(mean)
    if not all(kept.values()):
        raise SystemExit("every round of an arm was dropped for others' load; run again on a quieter machine")
    server = statistics.median(kept["server"])
    for name in ARMS:
        median = statistics.median(kept[name])
        print(f"{name}: median {median:.3f} s a request, {median / server:.2f}x the server's")


if __name__ == "__main__":
    main()
