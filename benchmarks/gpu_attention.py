"""Attention backends on a CUDA GPU: torch's SDPA with cuDNN attention (torch's own choice on Hopper),
SDPA without it (tunesmith's setting: FlashAttention / memory-efficient kernels), and eager attention.

cuDNN attention builds an execution graph for every new shape, and generation meets a new key/value
length at every token, so each round here uses prompts of lengths no earlier round had (a real
evaluation or server sees new lengths all the time). Rounds alternate the three ways; medians are
reported: generated tokens/s at batch 1 and 16 (greedy, tunesmith's batched generate), and one
training step (forward and backward, 4 x 512 tokens) with a new window length each round.

Run:  python benchmarks/gpu_attention.py [--model smollm2-135m-instruct | a local folder] [--rounds 3]
Without a GPU it says so and exits 2.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

WAYS = {
    "sdpa + cuDNN (torch's default)": ("sdpa", True),
    "sdpa, no cuDNN (tunesmith)": ("sdpa", False),
    "eager": ("eager", False),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=32)
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to measure (this script is for a machine with one)")
        raise SystemExit(2)
    from tunesmith.models import load_model, load_tokenizer
    from tunesmith.models.generate import generate

    tok = load_tokenizer(args.model)
    model = load_model(args.model, dtype=torch.bfloat16, device="cuda")
    results: dict[str, dict[str, list[float]]] = {w: {"batch 1": [], "batch 16": [], "train step ms": []} for w in WAYS}
    outputs: dict[str, list[str]] = {}
    shape = 0
    for _ in range(args.rounds):
        for way, (impl, cudnn) in WAYS.items():
            shape += 1  # lengths no earlier round or way has used
            torch.backends.cuda.enable_cudnn_sdp(cudnn)
            model.set_attn_implementation(impl)
            model.eval()
            filler = " and" * (3 * shape)
            prompts = [
                [{"role": "user", "content": f"Write one sentence about topic number {i}{filler}."}] for i in range(16)
            ]
            for size, ps in (("batch 1", prompts[:4]), ("batch 16", prompts)):
                torch.cuda.synchronize()
                began = time.perf_counter()
                outs = generate(
                    model, tok, ps, max_new_tokens=args.new_tokens, batch_size=1 if size == "batch 1" else 16
                )
                torch.cuda.synchronize()
                results[way][size].append(sum(o["new_tokens"] for o in outs) / (time.perf_counter() - began))
            model.train()
            ids = torch.randint(0, model.config.vocab_size, (4, 512 - shape), device="cuda")
            torch.cuda.synchronize()
            began = time.perf_counter()
            model(input_ids=ids, labels=ids).loss.backward()
            torch.cuda.synchronize()
            results[way]["train step ms"].append(1000 * (time.perf_counter() - began))
            model.zero_grad(set_to_none=True)
    same = [[{"role": "user", "content": f"Write one sentence about topic number {i}."}] for i in range(16)]
    model.eval()
    for way, (impl, cudnn) in WAYS.items():  # the same prompts each way: do the answers agree?
        torch.backends.cuda.enable_cudnn_sdp(cudnn)
        model.set_attn_implementation(impl)
        outputs[way] = [o["output"] for o in generate(model, tok, same, max_new_tokens=args.new_tokens, batch_size=16)]
    torch.backends.cuda.enable_cudnn_sdp(False)
    print(
        f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, model {args.model}, {args.rounds} rounds, medians"
    )
    print(f"{'attention':<32} {'tok/s batch 1':>14} {'tok/s batch 16':>15} {'train step ms':>14}")
    for way, r in results.items():
        print(
            f"{way:<32} {statistics.median(r['batch 1']):>14.1f} {statistics.median(r['batch 16']):>15.1f} "
            f"{statistics.median(r['train step ms']):>14.1f}"
        )
    ref = outputs["eager"]
    for way, outs in outputs.items():
        print(f"{way}: {sum(a == b for a, b in zip(outs, ref))}/16 answers the same as eager's")


if __name__ == "__main__":
    sys.exit(main())
