"""The memory/time/cost estimator: its counts against the model and autograd, and the plan for a config.

The estimate against the peak RSS of real training runs is `benchmarks/memory_estimate.py`.
"""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from tests.train.helpers import arithmetic_rows, make_project, preference_rows
from tunesmith.cli import app
from tunesmith.config import TrainConfig, load_config
from tunesmith.errors import TunesmithError
from tunesmith.estimate.advice import plan_for_config
from tunesmith.estimate.memory import GB, Arch, Setup, activation_bytes_per_token_layer, estimate_memory, lora_trainable
from tunesmith.estimate.plan import flops_per_token, load_gpus


def test_parameter_counts_match_the_model_and_peft(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    arch = Arch.from_folder(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert arch.params == sum(p.numel() for p in model.parameters())
    targets = ("q_proj", "v_proj", "down_proj")
    peft_model = get_peft_model(model, LoraConfig(r=8, target_modules=list(targets), task_type="CAUSAL_LM"))
    assert lora_trainable(arch, 8, targets) == sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


def _saved_bytes(model_dir, adapter: str, seq_len: int) -> int:
    """Bytes of the tensors autograd keeps for one training forward (weights excluded), as in training."""
    import torch

    from tunesmith.train.adapters import load_for_training
    from tunesmith.train.sft import trained_positions_loss

    model = load_for_training(str(model_dir), TrainConfig(adapter=adapter), precision="bf16")
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def keep(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen.setdefault(ptr, t.untyped_storage().nbytes())
        return t

    ids = torch.randint(3, 400, (1, seq_len))
    batch = {"input_ids": ids, "labels": ids.clone(), "position_ids": torch.arange(seq_len)[None]}
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        trained_positions_loss(model, batch)
    return sum(seen.values())


@pytest.mark.parametrize("adapter, method", [("lora", "lora"), ("none", "full")])
def test_activation_table_matches_what_autograd_keeps(tmp_path, tiny_tok, adapter, method):
    """Per token and layer, from the difference between a 2- and a 4-layer model (embedding and head cancel).
    Fails when a transformers/peft upgrade changes what the backward pass keeps."""
    from tunesmith.models.tiny import make_tiny_model

    seq_len = 128
    two = make_tiny_model(tmp_path / "two", hidden_size=64, num_layers=2, tokenizer=tiny_tok)
    four = make_tiny_model(tmp_path / "four", hidden_size=64, num_layers=4, tokenizer=tiny_tok)
    measured = (_saved_bytes(four, adapter, seq_len) - _saved_bytes(two, adapter, seq_len)) / 2 / seq_len
    predicted = activation_bytes_per_token_layer(Arch.from_folder(two), method, Setup(seq_len=seq_len))
    assert predicted == pytest.approx(measured, rel=0.10)


def test_memory_parts_follow_the_method():
    arch = Arch(
        hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8, head_dim=128, vocab=128256, tied=False
    )  # Llama-3-8B's shape
    assert arch.params == pytest.approx(8.03e9, rel=0.01)
    gpu = Setup(micro_batch=1, seq_len=2048, device="cuda", attention="sdpa")
    full, lora, qlora = (estimate_memory(arch, m, gpu) for m in ("full", "lora", "qlora"))
    assert full.parts["optimizer"] == 8 * arch.params and full.parts["gradients"] == 4 * arch.params
    assert lora.parts["optimizer"] == 8 * lora.trainable_params < 0.01 * full.parts["optimizer"]
    assert qlora.parts["weights"] < 0.4 * lora.parts["weights"]  # embeddings and head stay in bf16
    assert qlora.total < lora.total < full.total
    ckpt = Setup(micro_batch=1, seq_len=2048, device="cuda", attention="sdpa", gradient_checkpointing=True)
    lora_ckpt, qlora_ckpt = estimate_memory(arch, "lora", ckpt), estimate_memory(arch, "qlora", ckpt)
    assert lora_ckpt.parts["activations"] < lora.parts["activations"] / 5
    # the practitioners' rule for 8B at 2k tokens with checkpointing: LoRA wants a 24 GB card, QLoRA fits 16 GB
    assert 14 < lora_ckpt.total / GB < 24 and qlora_ckpt.total / GB < 14
    with pytest.raises(TunesmithError, match="CUDA"):
        estimate_memory(arch, "qlora", Setup())
    # FLOPs per token: 6N for full fine-tuning, 4N + 6 x adapter for LoRA (frozen weights pass input gradients only)
    f_full = flops_per_token(arch, "full", full.trainable_params, 2048, 1.0)
    f_lora = flops_per_token(arch, "lora", lora.trainable_params, 2048, 1.0)
    assert f_full / f_lora == pytest.approx(1.5, rel=0.05)


def _gpus(tmp_path):
    path = tmp_path / "gpus.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "mfu": 0.5,
                "gpus": [
                    {"name": "small", "memory_gb": 0.01, "bf16_tflops": 100, "usd_per_hour": 2.0},
                    {"name": "big", "memory_gb": 80, "bf16_tflops": 1000, "usd_per_hour": 4.0},
                ],
            }
        )
    )
    return path


def test_plan_from_prepared_windows(tmp_path, tiny_model_dir):
    import pyarrow.parquet as pq

    config = make_project(tmp_path / "p", tiny_model_dir, arithmetic_rows(64), max_steps=None, num_epochs=3)
    cfg = load_config(config)
    plan = plan_for_config(cfg, gpus_path=_gpus(tmp_path), tokens_per_s=1000)
    windows = pq.read_table(tmp_path / "p" / "out" / "data" / "prepared" / "train.parquet").column("input_ids")
    lengths = [len(w) for w in windows.to_pylist()]
    assert plan.data.source == "prepared windows"
    assert plan.data.tokens_per_epoch == sum(lengths) and plan.data.seq_len == max(lengths)
    assert 0 < plan.data.keep_share < 1  # prompts are not trained: the LM head skips them
    assert plan.hours_here() == pytest.approx(sum(lengths) * 3 / 1000 / 3600)
    rows = {(r["gpu"], r["method"]): r for r in plan.gpu_rows}
    assert not rows[("small", "lora")]["fits"] and rows[("big", "lora")]["fits"]
    for key, row in rows.items():
        price = 2.0 if key[0] == "small" else 4.0
        assert row["usd"] == pytest.approx(row["hours"] * price)
    assert rows[("big", "lora")]["hours"] == pytest.approx(rows[("small", "lora")]["hours"] / 10, rel=0.01)


def test_plan_from_records_when_not_prepared(tmp_path, tiny_model_dir):
    config = make_project(tmp_path / "p", tiny_model_dir, arithmetic_rows(64), max_steps=None)
    cfg = load_config(config)
    import shutil

    shutil.rmtree(tmp_path / "p" / "out" / "data" / "prepared")
    plan = plan_for_config(cfg, gpus_path=_gpus(tmp_path), tokens_per_s=1000)
    assert plan.data.source.startswith("record lengths")
    assert plan.data.keep_share == 1.0 and plan.data.seq_len == cfg.data.max_length  # upper bounds
    assert plan.data.tokens_per_epoch > 0


def test_the_dpo_pre_flight_takes_the_data_stage_figures_not_the_records(tmp_path, tiny_model_dir):
    """Preference pairs: the data stage measures the training pairs once (prepare.json); the pre-flight
    check plans from those figures, and works with the source records gone."""
    from tunesmith.data.stage import load_split
    from tunesmith.estimate.fit import fit_training
    from tunesmith.estimate.plan import data_stats
    from tunesmith.models import load_tokenizer

    config = make_project(tmp_path / "p", tiny_model_dir, preference_rows(40), method="dpo", max_steps=None)
    cfg = load_config(config)
    prepared = json.loads((tmp_path / "p" / "out" / "data" / "prepare.json").read_text())
    assert prepared["method"] == "dpo" and prepared["max_length"] == 64
    tokenizer = load_tokenizer(str(tiny_model_dir))
    longest_answer = [
        max(
            len(tokenizer.apply_chat_template([*r.prompt, *answer], tokenize=True, return_dict=True)["input_ids"])
            for answer in (r.chosen, r.rejected)
        )
        for r in load_split(cfg, "train")
    ]
    (tmp_path / "p" / "d.jsonl").unlink()  # not read again
    stats = data_stats(cfg)
    assert stats.source == "the data stage's pair lengths"
    assert stats.records == stats.sequences == len(longest_answer) == prepared["train"]["pairs"]
    assert stats.seq_len == max(longest_answer) and stats.tokens_per_epoch == sum(longest_answer)
    fit = fit_training(cfg)
    assert fit.data.source == "the data stage's pair lengths" and fit.total_steps > 0
    other = load_config(config, ["train.method=sft"])  # figures measured for another method are not used
    with pytest.raises(TunesmithError):
        data_stats(other)  # falls back to reading the records, which are gone
    shown = CliRunner().invoke(app, ["data", "prepare", str(config)])  # measures the pairs again, from the split
    assert shown.exit_code == 0, shown.output
    assert f"{len(longest_answer)} training pairs" in shown.output and "window 64" in shown.output


def test_bad_gpu_table_names_the_fields(tmp_path):
    bad = tmp_path / "gpus.yaml"
    bad.write_text("gpus:\n  - {name: x, memory: 24}\n")
    with pytest.raises(TunesmithError, match="memory_gb, bf16_tflops, usd_per_hour"):
        load_gpus(bad)
    mfu, gpus = load_gpus(None)
    assert 0 < mfu < 1 and any(g.name.startswith("H100") for g in gpus)


def test_cli_estimate_json(tmp_path, tiny_model_dir):
    config = make_project(tmp_path / "p", tiny_model_dir, arithmetic_rows(64), max_steps=None)
    result = CliRunner().invoke(
        app,
        [
            "advise",
            "--config",
            str(config),
            "--tokens-per-s",
            "500",
            "--json",
            "--problem",
            "format",
            "--examples",
            "400",
        ],
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["advice"]["recommendation"] == "lora"
    estimate = answer["estimate"]
    assert estimate["configured"] == "lora" and set(estimate["here"]) == {"full", "lora", "qlora"}
    assert estimate["throughput_source"] == "given"
    assert estimate["hours_here"] == pytest.approx(
        estimate["data"]["tokens_per_epoch"] * estimate["epochs"] / 500 / 3600
    )


def test_durations_never_print_zero_seconds():
    from tunesmith.cli.views import _duration

    assert [_duration(h) for h in (0.1 / 3600, 42 / 3600, 0.5, 3.0, None)] == [
        "< 1 s",
        "42 s",
        "30.0 min",
        "3.0 h",
        "?",
    ]


def test_run_summary_minutes_round_once():
    from tunesmith.cli.run_views import _minutes

    assert [_minutes(s) for s in (0.4, 59.6, 839.8, 61.2, 3600)] == [
        "0 s",
        "1 min 0 s",
        "14 min 0 s",
        "1 min 1 s",
        "60 min 0 s",
    ]


def test_estimate_says_what_it_does_not_model(tmp_path, tiny_model_dir):
    import yaml

    config = make_project(tmp_path / "p", tiny_model_dir, arithmetic_rows(64), max_steps=None)
    raw = yaml.safe_load(config.read_text())

    def caveats() -> list[str]:
        result = CliRunner().invoke(app, ["advise", "--config", str(config), "--tokens-per-s", "500", "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)["estimate"]["caveats"]

    assert [c for c in caveats() if "FSDP" in c] and not [c for c in caveats() if "modelled as SFT" in c]
    raw["train"]["method"] = "dpo"
    config.write_text(yaml.safe_dump(raw))
    assert [c for c in caveats() if c.startswith("modelled as SFT: DPO")]
