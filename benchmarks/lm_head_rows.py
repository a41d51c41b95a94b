"""The LM head on each row's trained positions only, against the positions any row trains.

transformers' `logits_to_keep` takes positions shared by every row of a batch, so with several packed
windows a step computes the LM head and the 49k-way softmax at every position that any window trains;
tunesmith then keeps, per row, only that row's trained positions (`train.sft._rows_only`). This times
a training step (forward and backward, tunesmith's LoRA set-up: no dropout, eager_varlen attention,
not compiled) on batches of packed windows of the support-tickets example, the two ways alternating
in one process, steps contaminated by other load dropped; it prints the share of positions each way
sends through the head, the medians and their ratio, and checks the losses agree.

Run:  python benchmarks/lm_head_rows.py [--model smollm2-135m-instruct] [--windows 4] [--precision bf16|fp32]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cpuload import OtherLoad  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "support-tickets-json" / "data" / "tickets.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--windows", type=int, default=4, help="packed windows per step (the demo's micro batch)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    ap.add_argument("--max-other-load", type=float, default=0.25)
    args = ap.parse_args()
    import torch

    import tunesmith.train.sft as sft
    from tunesmith.config import TrainConfig
    from tunesmith.data.check import Source, valid_records
    from tunesmith.data.packing import pack_sequences
    from tunesmith.data.template import IGNORE_INDEX, tokenize_messages
    from tunesmith.hardware import resolve_precision
    from tunesmith.models import load_tokenizer
    from tunesmith.train.adapters import load_for_training
    from tunesmith.train.collate import PackedCollator

    precision = resolve_precision(args.precision, "cpu")
    tok = load_tokenizer(args.model)
    examples = [tokenize_messages(r.messages, tok) for r in valid_records([Source(EXAMPLE)])]
    windows = pack_sequences(examples, args.max_length)
    collate = PackedCollator(tok.pad_token_id)
    batches = [collate(windows[i : i + args.windows]) for i in range(0, len(windows), args.windows)][: args.steps + 1]
    union = rows = total = 0
    for b in batches:
        trained = b["labels"][:, 1:] != IGNORE_INDEX
        union += int(trained.any(0).sum()) * trained.shape[0]
        rows += int(trained.sum())
        total += trained.numel()
    model = load_for_training(
        args.model, TrainConfig(lora_dropout=0.0, attn_implementation="eager_varlen"), precision=precision
    )
    model.train()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    rows_only = sft._rows_only
    ways = {"any row's positions": lambda _model, _rows: contextlib.nullcontext(), "each row's own": rows_only}
    times: dict[str, list[float]] = {w: [] for w in ways}
    losses: dict[str, list[float]] = {w: [] for w in ways}
    dropped = 0
    for i, b in enumerate(batches):
        for way, hook in ways.items():
            sft._rows_only = hook
            with OtherLoad() as load, autocast:
                loss, _ = sft.trained_positions_loss(model, b)
                loss.backward()
            model.zero_grad(set_to_none=True)
            losses[way].append(loss.item())
            if i == 0:
                continue  # warm-up
            if load.share > args.max_other_load:
                dropped += 1
                continue
            times[way].append(load.wall)
    sft._rows_only = rows_only
    print(
        f"{args.model}, {precision}, {len(batches)} steps of {args.windows} windows x {args.max_length} tokens; "
        f"{dropped} step(s) dropped for load; torch threads {torch.get_num_threads()}"
    )
    print(f"positions through the LM head: any row's {union / total:.1%}, each row's own {rows / total:.1%}")
    base = statistics.median(times["any row's positions"])
    for way, t in times.items():
        print(f"{way:<22} median step {statistics.median(t):6.2f} s   ratio {base / statistics.median(t):.2f}x")
    worst = max(abs(a - b) / abs(a) for a, b in zip(*losses.values()))
    print(f"losses agree to {worst:.1e} (relative, worst step)")


if __name__ == "__main__":
    sys.exit(main())
