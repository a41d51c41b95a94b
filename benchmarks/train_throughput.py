"""Training throughput: a plain fp32 padded transformers Trainer + peft LoRA vs tunesmith, lever by lever.

All configurations train the same LoRA (r=16, alpha=32, attention and MLP projections) on the
same records of the bundled support-tickets example. Each round runs one optimizer step of every
configuration in turn, in one process, so machine noise hits them alike; per step it records the
CPU share other processes took (/proc/stat) and drops contaminated steps. It prints real
(non-padding) tokens/s for each, each one's ratio to the baseline, peak memory, model-FLOPs
utilisation against a matmul peak in the trained precision measured in the same run, and the validation loss each
reaches after one pass over the same records (scored in fp32). Every configuration takes the same records
in the same steps in the same order (the records of tunesmith's shuffled packed windows; the baseline pads
them), so the losses compare the levers at equal tokens, not batch orders.

    baseline         transformers Trainer steps, fp32 weights, sdpa, LoRA dropout 0.05, each step's records
                     padded to the longest, logits and softmax at every position
    +packing         tunesmith's collator and loss: packed windows (padding-free), eager attention on CPU,
                     LM head and softmax only at positions that predict a trained token; still dropout 0.05
    +precision       frozen base in bf16 with bf16 autocast (only with --precision bf16)
    +no dropout      LoRA dropout 0 (tunesmith's default): no copy of each adapted layer's input
    +varlen          eager_varlen attention (tunesmith's CPU default, models/attention.py): eager maths
                     within each packed record instead of over the whole window's block-diagonal mask
    +compile         train.compile: each decoder layer compiled in place (regional, dynamic shapes; the
                     per-record attention stays eager), on +varlen: tunesmith's default in bf16 on CPUs
    +shared prefix   data.share_prefix (tunesmith's CPU default): each step's records re-packed so that records
                     opening with the same untrained prefix (the system prompt) carry one copy of it, on +compile
                     (+varlen with --no-compile); tokens/s still counts every record's full length
    +sdpa            instead of +varlen: sdpa attention with the packed block-diagonal mask, not compiled

Run:  python benchmarks/train_throughput.py --model tiny
      python benchmarks/train_throughput.py --model smollm2-135m-instruct --records 96   # this CPU's precision
      python benchmarks/train_throughput.py --model smollm2-135m-instruct --records 96 --precision fp32

The first step of each configuration is a warm-up and not measured; for +compile it holds the compile
(its time is printed: it is paid once per training run).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from cpuload import OtherLoad, peak_rss_mb, reset_peak_rss  # noqa: E402

from tunesmith.config import TrainConfig  # noqa: E402
from tunesmith.data.check import Source, valid_records  # noqa: E402
from tunesmith.data.packing import pack_sequences  # noqa: E402
from tunesmith.data.template import IGNORE_INDEX, tokenize_messages  # noqa: E402
from tunesmith.models import load_model, load_tokenizer  # noqa: E402
from tunesmith.train.adapters import load_for_training  # noqa: E402
from tunesmith.train.collate import PackedCollator  # noqa: E402
from tunesmith.train.sft import sft_trainer_class  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "support-tickets-json" / "data" / "tickets.jsonl"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def peak_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best matmul rate in `dtype` (only in the precision trained: bf16 on a CPU without native bf16 is
    emulated and takes minutes)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def make_trainer(model, dataset, collator, bf16: bool, lr: float, out: str, trainer_class=None):
    from transformers import Trainer, TrainingArguments

    trainer_class = trainer_class or Trainer
    args = TrainingArguments(
        output_dir=out,
        per_device_train_batch_size=1,
        learning_rate=lr,
        bf16=bf16,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
        warmup_steps=0,
        lr_scheduler_type="constant",
        seed=0,
        logging_nan_inf_filter=False,
    )
    trainer = trainer_class(model=model, args=args, train_dataset=dataset, data_collator=collator)
    trainer.create_optimizer_and_scheduler(num_training_steps=10_000)
    return trainer


def step(trainer, batch) -> None:
    """One optimizer step through the Trainer's own training_step and loss scaling, under the
    accelerator's autocast (in `Trainer.train` the prepared model's forward carries it)."""
    model = trainer.model
    model.train()
    n_items = int((batch["labels"][..., 1:] != IGNORE_INDEX).sum())
    with trainer.accelerator.autocast():
        trainer.training_step(model, batch, num_items_in_batch=torch.tensor(n_items))
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)


@torch.no_grad()
def validation_loss(model, examples) -> float:
    """Mean loss per trained token, in fp32 for every configuration: a bf16-trained adapter is scored on
    the fp32 base (its bf16 weights converted exactly), so the figure is the training's, not bf16 inference's
    rounding. Called after all steps: it leaves the model in fp32."""
    model.float().eval()
    total, count = 0.0, 0
    for ex in examples:
        ids = torch.tensor([ex["input_ids"]])
        labels = torch.tensor([ex["labels"]])
        logits = model(input_ids=ids, use_cache=False).logits.float()
        logp = torch.log_softmax(logits[0, :-1], -1)
        target = labels[0, 1:]
        keep = target != IGNORE_INDEX
        total -= logp[keep].gather(-1, target[keep, None]).sum().item()
        count += int(keep.sum())
    return total / count


def flops_per_token(model) -> float:
    """Forward 2N + backward 2N for frozen base matmuls (activation grads only), 6N for trained LoRA weights."""
    frozen = sum(
        p.numel() for n, p in model.named_parameters() if p.dim() == 2 and not p.requires_grad and "embed" not in n
    )
    if getattr(model.config, "tie_word_embeddings", False):
        frozen += model.get_input_embeddings().weight.numel()  # the tied embedding is also the LM head
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return 4 * frozen + 6 * trained


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="tiny, smollm2-135m-instruct, or a model folder")
    ap.add_argument("--records", type=int, default=96, help="training records (one pass)")
    ap.add_argument(
        "--batch",
        type=int,
        default=4,
        help="records per step, about: sizes the windows, whose records the baseline pads into its steps",
    )
    ap.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="tunesmith's precision: auto is what training would choose here (bf16 where the CPU has "
        "it natively); fp32 on a bf16 CPU stands in for one without",
    )
    ap.add_argument("--no-compile", action="store_true", help="leave out +compile (inductor needs a C++ compiler)")
    ap.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="tunesmith window size (default: room for --batch records of mean length, so all "
        "configurations see about the same records per step)",
    )
    ap.add_argument("--max-other-load", type=float, default=0.25, help="drop steps where others used more CPU")
    ap.add_argument("--lr", type=float, default=2e-4)
    args = ap.parse_args()
    from tunesmith.hardware import resolve_precision

    args.precision = resolve_precision(args.precision, "cpu")

    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq

    tmp = tempfile.mkdtemp()
    if args.model == "tiny":  # SmolLM2's real tokenizer and vocabulary on a 4-layer, 256-wide Llama
        from tunesmith.models.tiny import make_tiny_model

        base = str(
            make_tiny_model(
                Path(tmp) / "tiny", hidden_size=256, num_layers=4, tokenizer=load_tokenizer("smollm2-135m-instruct")
            )
        )
    else:
        base = args.model
    tok = load_tokenizer(base)
    records = list(valid_records([Source(EXAMPLE)]))
    train_recs, val_recs = records[: args.records], records[-32:]
    examples = [tokenize_messages(r.messages, tok) for r in train_recs]
    val = [tokenize_messages(r.messages, tok) for r in val_recs]

    mean_len = statistics.mean(len(e["input_ids"]) for e in examples)
    max_length = args.max_length or max(
        max(len(e["input_ids"]) for e in examples), int(args.batch * mean_len / 64 + 1) * 64
    )
    windows = pack_sequences(examples, max_length)
    random.Random(0).shuffle(windows)  # as the Trainer's sampler does
    packed = PackedCollator(tok.pad_token_id)
    our_batches = [packed([w]) for w in windows]
    shared_windows = [
        pack_sequences([examples[j] for j in w["records"]], sum(w["seq_lengths"]), share_prefix=True) for w in windows
    ]
    assert all(len(s) == 1 for s in shared_windows)
    shared_batches = [packed(s) for s in shared_windows]
    computed = sum(len(s[0]["input_ids"]) for s in shared_windows) / sum(len(w["input_ids"]) for w in windows)
    # The baseline takes the same records in the same steps, in the same order, padded: after one short pass
    # the validation loss moves 5-12% with which records share a step and their order alone (docs/benchmarks.md),
    # more than any lever; with the same batches, packing's loss is the padded one to the last digit, and what
    # the loss column shows is what the other levers (precision, dropout, kernels) do at equal tokens
    pad_collator = DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=IGNORE_INDEX)
    base_batches = []
    for w in windows:
        bounds = [0] + list(itertools.accumulate(w["seq_lengths"]))
        base_batches.append(
            pad_collator(
                [
                    {"input_ids": w["input_ids"][a:b], "labels": w["labels"][a:b], "attention_mask": [1] * (b - a)}
                    for a, b in zip(bounds, bounds[1:])
                ]
            )
        )
    dummy = Dataset.from_list([{"x": 0}])

    torch.manual_seed(0)
    plain = load_model(base, dtype=torch.float32)
    plain.config.use_cache = False
    plain = get_peft_model(
        plain, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=TARGETS, task_type="CAUSAL_LM")
    )
    configs = {
        "baseline": (
            make_trainer(plain, dummy, pad_collator, bf16=False, lr=args.lr, out=tmp + "/base"),
            base_batches,
            plain,
        )
    }
    ladder = [("+packing", "fp32", 0.05, False, "eager")]
    if args.precision == "bf16":
        ladder.append(("+precision", "bf16", 0.05, False, "eager"))
    ladder.append(("+no dropout", args.precision, 0.0, False, "eager"))
    ladder.append(("+varlen", args.precision, 0.0, False, "eager_varlen"))
    if not args.no_compile:
        ladder.append(("+compile", args.precision, 0.0, True, "eager_varlen"))
    ladder.append(("+sdpa", args.precision, 0.0, False, "sdpa"))  # instead of +varlen, not compiled
    for name, precision, dropout, compiled, attention in ladder:
        torch.manual_seed(0)
        model = load_for_training(
            base,
            TrainConfig(lora_dropout=dropout, attn_implementation=attention, compile=compiled),
            precision=precision,
        )
        trainer = make_trainer(
            model,
            dummy,
            packed,
            bf16=precision == "bf16",
            lr=args.lr,
            out=f"{tmp}/{len(configs)}",
            trainer_class=sft_trainer_class(),
        )
        configs[name] = (trainer, our_batches, model)
        if attention == "eager_varlen" and (compiled or args.no_compile):
            # the same records in the same steps, each step's shared openings computed once
            torch.manual_seed(0)
            model = load_for_training(
                base,
                TrainConfig(lora_dropout=dropout, attn_implementation=attention, compile=compiled),
                precision=precision,
            )
            trainer = make_trainer(
                model,
                dummy,
                packed,
                bf16=precision == "bf16",
                lr=args.lr,
                out=f"{tmp}/{len(configs)}",
                trainer_class=sft_trainer_class(),
            )
            configs["+shared prefix"] = (trainer, shared_batches, model)

    timings = {name: [] for name in configs}
    dropped = {name: 0 for name in configs}
    peaks = {name: 0.0 for name in configs}  # process peak RSS during each configuration's steps
    first_step: dict[str, float] = {}
    peak = peak_gflops(torch.bfloat16 if args.precision == "bf16" else torch.float32)
    rounds = max(len(base_batches), len(our_batches))
    print(
        f"model {args.model}: {len(examples)} records in {len(windows)} steps (the same records per step for all: "
        f"padded for the baseline, packed for tunesmith) in windows of <= {max_length} tokens, precision {args.precision}; "
        f"{args.precision} matmul peak {peak:.0f} GFLOP/s; torch threads {torch.get_num_threads()}; with shared prefixes "
        f"{computed:.0%} of the tokens are computed",
        flush=True,
    )
    for i in range(rounds):
        for name, (trainer, batches, _) in configs.items():
            if i >= len(batches):
                continue
            b = batches[i]
            tokens = int(b["attention_mask"].sum()) if "attention_mask" in b else len(windows[i]["input_ids"])
            reset_peak_rss()
            with OtherLoad() as load:
                step(trainer, b)
            peaks[name] = max(peaks[name], peak_rss_mb())
            if i == 0:  # warm-up step: allocator and kernel caches (and compilation)
                first_step[name] = round(load.wall, 1)
                continue
            if load.share > args.max_other_load:
                dropped[name] += 1
                continue
            timings[name].append(tokens / load.wall)
    if empty := [name for name, kept in timings.items() if not kept]:  # a clear message, not a traceback
        sys.exit(
            f"every measured step of {', '.join(empty)} was dropped: other processes took more than "
            f"--max-other-load ({args.max_other_load:.0%}) of the CPU. Run it with nothing else running, "
            "or with more --records (more steps) or a higher --max-other-load."
        )
    result = {
        "model": args.model,
        "records": len(examples),
        "precision": args.precision,
        f"peak_{args.precision}_gflops": round(peak),
        "shared_prefix_computed_share": round(computed, 3),
        "configurations": {},
    }
    base_rate = statistics.median(timings["baseline"])
    base_loss = validation_loss(plain, val)
    for name, (_, _, model) in configs.items():
        rate = statistics.median(timings[name])
        loss = base_loss if name == "baseline" else validation_loss(model, val)
        result["configurations"][name] = {
            "median_real_tokens_per_s": round(rate, 1),
            "ratio_to_baseline": round(rate / base_rate, 2),
            "steps_measured": len(timings[name]),
            "steps_dropped_for_load": dropped[name],
            "peak_rss_mb_during_steps": round(peaks[name]),
            "validation_loss": round(loss, 4),
            "validation_loss_vs_baseline": round((loss - base_loss) / base_loss, 4),
            "first_step_s": first_step.get(name),
        }
    fpt = flops_per_token(configs[list(configs)[-1]][2])  # the same LoRA on the same base in every configuration
    for row in result["configurations"].values():
        row[f"mfu_vs_{args.precision}_peak"] = round(row["median_real_tokens_per_s"] * fpt / (peak * 1e9), 3)
    result["note"] = "peak RSS is the whole process (all models resident); the differences are activation memory"
    print(json.dumps(result, indent=2))
    print(f"\n{'configuration':<24}{'real tok/s':>12}{'ratio':>8}{'val loss':>10}{'vs base':>9}{'MFU':>7}")
    for name, row in result["configurations"].items():
        print(
            f"{name:<24}{row['median_real_tokens_per_s']:>12}{row['ratio_to_baseline']:>7}x{row['validation_loss']:>10}"
            f"{row['validation_loss_vs_baseline']:>+9.1%}{row[f'mfu_vs_{args.precision}_peak']:>7.1%}"
        )


if __name__ == "__main__":
    main()
