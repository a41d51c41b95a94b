"""The pre-flight check: a new user's config (data paths and a label field only) fits and trains enough;
explicit settings that cannot fit stop before any model loads; hardware is detected honestly."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tunesmith.cli import app
from tunesmith.config import load_config
from tunesmith.errors import TunesmithError
from tunesmith.estimate.fit import fit_training, openai_epochs, steps_per_epoch

TOPICS = {
    "billing": ["invoice", "refund", "charge", "payment"],
    "shipping": ["parcel", "delivery", "courier", "box"],
    "account": ["password", "login", "email", "profile"],
    "product": ["size", "colour", "stock", "model"],
    "returns": ["return", "exchange", "label", "warranty"],
}


def classification_rows(n: int = 1000, seed: int = 0) -> list[dict]:
    """Short questions, each labelled with its topic (about 30-70 tokens with the chat template)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = rng.choice(sorted(TOPICS))
        words = rng.sample(TOPICS[topic], 2) + [
            rng.choice(["please", "today", "again", "now", "soon"]) for _ in range(rng.randint(0, 6))
        ]
        question = f"Question {i}: about my {' and '.join(words[:2])}, {' '.join(words[2:])}?"
        rows.append(
            {
                "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": topic}],
                "topic": topic,
            }
        )
    return rows


@pytest.fixture(scope="module")
def new_user_project(tmp_path_factory, tiny_model_dir):
    """A project whose config names only the data files and the label field (and the tiny model)."""
    root = tmp_path_factory.mktemp("new-user")
    rows = classification_rows()
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:900]))
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[900:]))
    config = root / "tunesmith.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "base_model": str(tiny_model_dir),
                "data": {"datasets": [{"path": "train.jsonl"}, {"path": "test.jsonl"}], "label_field": "topic"},
            }
        )
    )
    runner = CliRunner()
    for command in (["data", "split", str(config)], ["data", "prepare", str(config)]):
        result = runner.invoke(app, command, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return config


def _train_lengths(cfg, tokenizer) -> np.ndarray:
    from tunesmith.data.lengths import LengthCounter
    from tunesmith.data.stage import load_split, system_prompt_for

    counter = LengthCounter(tokenizer, 4096, system_prompt_for(cfg))  # a label task: the auto classifier prompt
    for i, record in enumerate(load_split(cfg, "train")):
        counter.add(i, record)
    counter.flush()
    return np.asarray(counter.lengths)


def test_defaults_choose_a_window_batch_and_schedule_that_fit(new_user_project, tiny_tok):
    cfg = load_config(new_user_project)
    assert cfg.data.max_length == "auto" and cfg.train.micro_batch_size == "auto"
    prepared = json.loads((cfg.output_path / "data" / "prepare.json").read_text())
    window = prepared["max_length"]
    lengths = _train_lengths(cfg, tiny_tok)
    # a multiple of 64 holding at least 99% of the training records: the shortest one, or a longer one that
    # packing fills at least 90% where the shortest would not (data/window.py)
    from tunesmith.data.window import packing_fill

    covering = next(w for w in range(64, 4096, 64) if (lengths <= w).mean() >= 0.99)
    assert window % 64 == 0 and window >= covering
    assert window == covering or (packing_fill(lengths, window) >= 0.9 > packing_fill(lengths, covering))
    assert window <= max(4 * covering, 512)  # not the old 2048-token default

    fit = fit_training(cfg)
    t = fit.cfg.train
    assert fit.cfg.data.max_length == window
    assert t.auto_fields() == []  # everything resolved
    assert t.num_epochs == 3  # about 720 training records: OpenAI's rule
    assert t.micro_batch_size * window <= 2048 and t.micro_batch_size >= 1
    effective = t.micro_batch_size * t.gradient_accumulation_steps
    assert (
        fit.total_steps == steps_per_epoch(fit.data.sequences, t.micro_batch_size, t.gradient_accumulation_steps, 1) * 3
    )
    assert 60 <= fit.total_steps <= 160, (fit.total_steps, effective, fit.data.sequences)
    assert fit.estimate.total <= fit.budget_bytes and not fit.warnings
    assert t.attn_implementation == "eager_varlen" and t.gradient_checkpointing is False
    assert t.compile is False  # a tiny model: too little work to pay a compile back
    assert {c["setting"] for c in fit.choices} >= {
        "data.max_length",
        "train.micro_batch_size",
        "train.num_epochs",
        "train.gradient_accumulation_steps",
    }


def test_a_new_users_config_trains_with_every_default(new_user_project):
    result = CliRunner().invoke(app, ["train", str(new_user_project), "train.mlflow=false"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    cfg = load_config(new_user_project)
    run = cfg.output_path / "train"
    fit = json.loads((run / "fit.json").read_text())
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["max_steps"] == fit["total_steps"] >= 30
    assert meta["fit"]["micro_batch_size"] == fit["micro_batch_size"]
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert (
        "auto" not in {str(v) for v in resolved["train"].values()}
        and resolved["data"]["max_length"] == fit["max_length"]
    )
    assert meta["eval_loss_best"] < meta["eval_loss_first"]  # it learned something
    assert "Pre-flight" in result.output and "train.micro_batch_size" in result.output


def test_explicit_settings_that_cannot_fit_stop_before_the_model_loads(new_user_project, monkeypatch):
    import tunesmith.train.adapters as adapters

    def refuse(*args, **kwargs):
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(adapters, "load_for_training", refuse)
    result = CliRunner().invoke(
        app,
        ["train", str(new_user_project), "train.micro_batch_size=512", "train.max_memory_gb=0.7", "train.mlflow=false"],
    )
    assert isinstance(result.exception, TunesmithError), result.output  # `main` prints it, exit status 2
    assert result.exception.exit_code == 2
    message = str(result.exception)
    assert "train.micro_batch_size=1" in message and "0.7 GB available" in message and "Nothing was loaded" in message


def test_explicit_settings_are_kept_and_the_rest_follow(new_user_project):
    cfg = load_config(new_user_project, ["train.micro_batch_size=2", "train.num_epochs=1"])
    fit = fit_training(cfg)
    assert fit.cfg.train.micro_batch_size == 2 and fit.cfg.train.num_epochs == 1
    assert "train.micro_batch_size" not in {c["setting"] for c in fit.choices}
    accumulation = fit.cfg.train.gradient_accumulation_steps
    assert accumulation == max(1, -(-round(fit.data.sequences / 100) // 2))


def test_the_learning_rate_follows_the_model_size_unless_set(new_user_project):
    from tunesmith.config import TrainConfig
    from tunesmith.estimate.fit import default_learning_rate

    chosen = {c["setting"]: c for c in fit_training(load_config(new_user_project)).choices}
    assert chosen["train.learning_rate"]["value"] == 1e-3 and "parameters" in chosen["train.learning_rate"]["why"]
    kept = fit_training(load_config(new_user_project, ["train.learning_rate=3e-4"]))
    assert kept.cfg.train.learning_rate == 3e-4 and "train.learning_rate" not in {c["setting"] for c in kept.choices}
    lora = TrainConfig()
    assert [default_learning_rate(lora, n)[0] for n in (135e6, 7e9, 70e9)] == [1e-3, 2e-4, 1e-4]
    assert default_learning_rate(TrainConfig(method="dpo"), 135e6)[0] == 2e-4  # preference methods keep theirs
    assert default_learning_rate(TrainConfig(adapter="none"), 135e6)[0] == 2e-5


def test_few_steps_warn(new_user_project):
    cfg = load_config(
        new_user_project, ["train.micro_batch_size=64", "train.gradient_accumulation_steps=8", "train.num_epochs=1"]
    )
    fit = fit_training(cfg)
    assert fit.total_steps < 30 and "optimizer steps" in fit.warnings[0]


def test_two_processes_share_memory_and_batch(new_user_project):
    one, two = fit_training(load_config(new_user_project)), fit_training(load_config(new_user_project), nproc=2)
    assert two.budget_bytes == pytest.approx(one.budget_bytes / 2, rel=0.05)
    t1, t2 = one.cfg.train, two.cfg.train
    effective = t1.micro_batch_size * t1.gradient_accumulation_steps
    assert effective <= t2.micro_batch_size * t2.gradient_accumulation_steps * 2 <= effective + 1  # same batch


def test_two_processes_train_with_the_defaults(new_user_project, tmp_path):
    import shutil
    import subprocess
    import sys

    project = tmp_path / "p"
    shutil.copytree(new_user_project.parent, project)
    config = project / "tunesmith.yaml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tunesmith.cli",
            "train",
            str(config),
            "--nproc",
            "2",
            "train.max_steps=4",
            "train.mlflow=false",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = load_config(config).output_path / "train"
    fit = json.loads((run / "fit.json").read_text())
    meta = json.loads((run / "metadata.json").read_text())
    assert meta["steps"] == 4 and "shared by 2 processes" in fit["budget_source"]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["micro_batch_size"] == fit["micro_batch_size"]


def test_a_resumed_run_keeps_what_the_interrupted_one_chose(new_user_project, tmp_path):
    from tunesmith.train.stage import previous_choices, train_dir

    cfg = load_config(new_user_project, [f"output_dir={tmp_path / 'out'}", "train.num_epochs=2"])
    train_dir(cfg).mkdir(parents=True)
    (train_dir(cfg) / "fit.json").write_text(
        json.dumps(
            {
                "choices": [
                    {"setting": "train.micro_batch_size", "value": 3, "why": ""},
                    {"setting": "train.gradient_checkpointing", "value": True, "why": ""},
                    {"setting": "train.num_epochs", "value": 7, "why": ""},
                ]
            }
        )
    )
    resumed = previous_choices(cfg)
    assert resumed.train.micro_batch_size == 3 and resumed.train.gradient_checkpointing is True
    assert resumed.train.num_epochs == 2  # set by the user this time: kept
    assert resumed.output_dir == cfg.output_dir and resumed.config_path == cfg.config_path


def test_openai_epoch_rule():
    assert openai_epochs(10) == 10 and openai_epochs(20) == 5 and openai_epochs(34) == 3
    assert openai_epochs(1000) == 3 and openai_epochs(20_000) == 1 and openai_epochs(1) == 25


def test_a_killed_runs_zero_throughput_is_not_used(new_user_project):
    from tunesmith.estimate.advice import plan_for_config
    from tunesmith.estimate.plan import measured_throughput

    cfg = load_config(new_user_project)
    cfg_killed = load_config(new_user_project, ["output_dir=killed-out"])
    folder = cfg_killed.output_path / "train"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(json.dumps({"adapter": "lora", "completed": False}))
    (folder / "metrics.csv").write_text("step,loss,tokens_per_second\n1,2.0,0\n")
    assert measured_throughput(cfg_killed, "lora") is None
    plan = plan_for_config(cfg)
    assert plan.tokens_per_s and plan.tokens_per_s > 0
    precision = plan.fit["precision"]
    assert f"{precision} matmul peak" in plan.throughput_source or "measured by the last" in plan.throughput_source


def test_precision_is_honest(monkeypatch):
    import tunesmith.hardware as hw

    monkeypatch.setattr(hw, "cpu_has_bf16", lambda: False)
    assert hw.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(hw, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(hw, "cpu_has_amx", lambda: True)
    assert hw.resolve_precision("auto", "cpu") == "bf16"
    assert hw.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(TunesmithError, match="fp16 needs a CUDA GPU"):
        hw.resolve_precision("fp16", "cpu")
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    assert hw.native_precision("cuda") == "fp16"  # a T4: no bf16, fp16 with loss scaling
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    assert hw.native_precision("cuda") == "bf16"


def test_bf16_without_amx_is_taken_only_where_it_measures_faster(monkeypatch, tmp_path):
    """AVX512-BF16 without AMX: bf16 matmuls ran 0.64x fp32's on a capped Xeon, faster on an EPYC;
    the measurement decides, once per CPU, and every later process reads the same answer."""
    import tunesmith.hardware as hw
    from tunesmith.estimate.fit import precision_reason

    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path))
    monkeypatch.setattr(hw, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(hw, "cpu_has_amx", lambda: False)
    measured = []

    def slow_bf16(*args, **kwargs):
        measured.append(1)
        return 0.64

    monkeypatch.setattr(hw, "_measure_bf16_speedup", slow_bf16)
    assert hw.resolve_precision("auto", "cpu") == "fp32"
    assert hw.resolve_precision("auto", "cpu") == "fp32" and len(measured) == 1  # cached, not measured again
    assert hw.resolve_precision("bf16", "cpu") == "bf16"  # an explicit setting is kept
    assert "measured 0.64x fp32's" in precision_reason("cpu", "fp32")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")  # another cap: its own measurement
    monkeypatch.setattr(hw, "_measure_bf16_speedup", lambda *a, **k: 1.6)
    assert hw.resolve_precision("auto", "cpu") == "bf16"
    assert len(list((tmp_path / "hardware").glob("bf16-speedup-*.json"))) == 2
    monkeypatch.setattr(hw, "cpu_has_amx", lambda: True)
    monkeypatch.setattr(hw, "_measure_bf16_speedup", lambda *a, **k: pytest.fail("AMX needs no measurement"))
    assert hw.resolve_precision("auto", "cpu") == "bf16"
    assert precision_reason("cpu", "bf16") == "native on this CPU"


def test_a_slower_native_bf16_is_still_taken_where_fp32_does_not_fit(new_user_project, monkeypatch):
    """On AVX512-BF16 without AMX, auto prefers fp32 where bf16 measures slower, but not at the price of a run
    that does not fit: bf16 halves the frozen weights."""
    import tunesmith.estimate.fit as fit_module
    import tunesmith.hardware as hw
    from tunesmith.estimate.fit import SAFETY
    from tunesmith.estimate.memory import GB, Arch

    monkeypatch.setattr(hw, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(hw, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(hw, "cpu_bf16_speedup", lambda: 0.6)
    llama_7b = Arch(
        hidden=4096, intermediate=11008, layers=32, heads=32, kv_heads=32, head_dim=128, vocab=32000, tied=False
    )
    monkeypatch.setattr(fit_module, "model_arch", lambda cfg: llama_7b)  # where the weights weigh the most
    leanest = {  # strict=False under a budget nothing meets: the smallest estimate of all the options
        p: fit_training(
            load_config(new_user_project, ["train.max_memory_gb=1e-6", f"train.precision={p}"]), strict=False
        )
        for p in ("fp32", "bf16")
    }
    assert leanest["bf16"].estimate.total < leanest["fp32"].estimate.total
    assert fit_training(load_config(new_user_project, ["train.max_memory_gb=500"])).precision == "fp32"  # the faster
    between = (leanest["bf16"].estimate.total + leanest["fp32"].estimate.total) / 2 / SAFETY / GB
    fit = fit_training(load_config(new_user_project, [f"train.max_memory_gb={between}"]))
    why = {c["setting"]: c["why"] for c in fit.choices}["train.precision"]
    assert fit.precision == "bf16" and fit.cfg.train.precision == "bf16"
    assert "measured 0.60x" in why and why.endswith("fp32 does not fit")


@pytest.mark.skipif("amx_bf16" not in Path("/proc/cpuinfo").read_text(), reason="needs a CPU with AMX to cap")
def test_amx_capped_to_avx512_bf16_trains_in_fp32(tmp_path):
    """The real measurement on an AMX Xeon told to use no more than AVX512_CORE_BF16 (the kernels oneDNN
    runs on such CPUs without AMX): bf16 matmuls are slower there, so `auto` is fp32."""
    import subprocess
    import sys

    probe = "import tunesmith.hardware as hw; print(hw.cpu_bf16_speedup(), hw.resolve_precision('auto', 'cpu'))"
    for cap, expected in (("AVX512_CORE_BF16", "fp32"), ("AVX512_CORE_AMX", "bf16")):
        env = {**os.environ, "ONEDNN_MAX_CPU_ISA": cap, "TUNESMITH_CACHE": str(tmp_path)}
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
        speedup, precision = out.stdout.split()
        assert precision == expected, out.stdout
        assert (speedup == "None") == (cap == "AVX512_CORE_AMX") and (cap != "AVX512_CORE_BF16" or float(speedup) < 1)


def test_device_selection_on_a_cpu_machine(monkeypatch):
    import torch

    import tunesmith.hardware as hw

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hw, "has_mps", lambda: False)
    assert hw.pick_device("auto") == "cpu" and hw.pick_device("cpu") == "cpu"
    with pytest.raises(TunesmithError, match="no CUDA GPU"):
        hw.pick_device("cuda")
    assert torch.backends.cuda.cudnn_sdp_enabled()  # a CPU run leaves torch's attention backends alone
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    try:
        assert hw.pick_device("auto") == "cuda" and hw.pick_device("cpu") == "cpu"
        assert not torch.backends.cuda.cudnn_sdp_enabled()  # on a GPU: no cuDNN graph per new sequence length
    finally:
        torch.backends.cuda.enable_cudnn_sdp(True)


def test_old_bf16_setting_still_reads():
    from tunesmith.config import TrainConfig

    assert TrainConfig(bf16=False).precision == "fp32" and TrainConfig(bf16=True).precision == "bf16"
    assert TrainConfig().precision == "auto"


def test_memory_available_respects_the_cgroup_limit(tmp_path):
    from tunesmith.hardware import available_memory

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 65536000 kB\nMemAvailable: 32768000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    free, source = available_memory("cpu", cgroup_root=cgroup, meminfo=meminfo)
    assert free == 32768000 * 1024 and "RAM available" in source
    (cgroup / "memory.max").write_text(f"{8 * 2**30}\n")
    (cgroup / "memory.current").write_text(f"{2 * 2**30}\n")
    free, source = available_memory("cpu", cgroup_root=cgroup, meminfo=meminfo)
    assert free == 6 * 2**30 and "cgroup limit" in source
    (cgroup / "memory.max").write_text("max\n")
    assert available_memory("cpu", cgroup_root=cgroup, meminfo=meminfo)[0] == 32768000 * 1024


def test_the_model_card_shows_what_the_pre_flight_check_chose(new_user_project):
    from tunesmith.evaluate.result import EvalResult
    from tunesmith.registry.card import model_card

    cfg = load_config(new_user_project)
    metrics = {
        "task": "classification",
        "test_examples": 3,
        "models": {"fine_tuned": {"accuracy": {"mean": 0.9, "ci95": [0.8, 1.0]}}},
    }
    training = {
        "steps": 96,
        "fit": {
            "num_epochs": 3.0,
            "micro_batch_size": 10,
            "gradient_accumulation_steps": 2,
            "max_length": 128,
            "precision": "bf16",
            "device": "cpu",
        },
    }
    card = model_card(cfg, 1, EvalResult.of(metrics), [], training, {})
    assert "| epochs | 3.0 |" in card and "| micro batch × accumulation | 10 × 2 |" in card
    assert "| max length | 128 |" in card and "| precision, device | bf16, cpu |" in card
    assert "auto" not in card.split("## Training configuration")[1].split("## Evaluation")[0]


def test_compile_is_chosen_where_it_pays(monkeypatch):
    """train.compile: auto is on only for SFT on a CPU with a C++ compiler, without gradient checkpointing,
    for runs long enough to pay the one-off compile back."""
    from tunesmith.config import TrainConfig
    from tunesmith.estimate.fit import compile_choice

    monkeypatch.delenv("TORCHDYNAMO_DISABLE", raising=False)
    monkeypatch.setenv("CXX", "sh")  # any program on PATH stands in for g++
    demo = dict(device="cpu", tokens=178_000, params=135_000_000)  # the demo: 3 epochs of 59k tokens
    assert compile_choice(TrainConfig(), **demo)[0] is True
    assert compile_choice(TrainConfig(), device="cpu", tokens=178_000, params=2_000_000)[0] is False  # a tiny model
    assert compile_choice(TrainConfig(), device="cpu", tokens=20_000, params=135_000_000)[0] is False  # a short run
    assert compile_choice(TrainConfig(), **{**demo, "device": "cuda"})[0] is False
    assert compile_choice(TrainConfig(method="dpo"), **demo)[0] is False
    # fp32 gains little a step, so it needs more work: the two-epoch demo (119k tokens) is compiled in bf16 only
    two_epochs = dict(device="cpu", tokens=118_606, params=135_000_000)
    assert compile_choice(TrainConfig(precision="bf16"), **two_epochs)[0] is True
    on, why = compile_choice(TrainConfig(precision="fp32"), **two_epochs)
    assert on is False and "fp32" in why
    assert compile_choice(TrainConfig(precision="fp32"), device="cpu", tokens=400_000, params=135_000_000)[0] is True
    assert compile_choice(TrainConfig(gradient_checkpointing=True), **demo)[0] is False
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    on, why = compile_choice(TrainConfig(), **demo)
    assert on is False and "no-such-compiler-here" in why
    monkeypatch.setenv("CXX", "sh")
    monkeypatch.setenv("TORCHDYNAMO_DISABLE", "1")
    assert compile_choice(TrainConfig(), **demo)[0] is False


def test_a_capped_instruction_set_means_no_bf16(monkeypatch):
    """ATEN_CPU_CAPABILITY=avx2 makes torch use AVX2 only, and tunesmith then trains in fp32."""
    import subprocess
    import sys

    import tunesmith.hardware as hw

    for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"):  # as the CPU is, whatever this process was given
        monkeypatch.delenv(name, raising=False)
    flags = Path("/proc/cpuinfo").read_text()
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    assert hw.cpu_has_bf16() == native
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not hw.cpu_has_bf16()
    assert hw.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert hw.cpu_has_bf16() == native
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    probe = (
        "import torch, tunesmith.hardware as hw;"
        "print(torch.backends.cpu.get_cpu_capability(), hw.resolve_precision('auto', 'cpu'))"
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["AVX2", "fp32"]


def test_inference_weights_follow_auto_unless_fp32_would_crowd_memory(tiny_model_dir, monkeypatch, capsys):
    """Evaluation, replay and serving load the base model for inference only: `auto` resolves as in
    training, and where it resolves to fp32 on a CPU with native bf16 the fp32 weights must leave room."""
    import torch

    import tunesmith.hardware as hw
    from tunesmith.models import inference_dtype, load_model
    from tunesmith.models.loading import weight_count

    params = sum(p.numel() for p in load_model(str(tiny_model_dir)).parameters())
    assert weight_count(str(tiny_model_dir)) == params  # from the safetensors headers, nothing loaded
    assert weight_count("HuggingFaceTB/SmolLM2-135M-Instruct") is None  # a hub id: not downloaded to count
    monkeypatch.setattr(hw, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(hw, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(hw, "cpu_bf16_speedup", lambda: 0.6)  # fp32 measured faster
    monkeypatch.setattr(hw, "available_memory", lambda device="cpu": (100 * 4 * params, "plenty"))
    assert inference_dtype(str(tiny_model_dir), "cpu") == torch.float32
    monkeypatch.setattr(hw, "available_memory", lambda device="cpu": (int(1.5 * 4 * params), "1.5 fp32 copies free"))
    assert inference_dtype(str(tiny_model_dir), "cpu") == torch.bfloat16
    assert "bf16, though fp32 measured faster" in capsys.readouterr().err
    assert inference_dtype(str(tiny_model_dir), "cpu", "fp32") == torch.float32  # a setting is kept
    monkeypatch.setattr(hw, "cpu_has_bf16", lambda: False)  # no native bf16: emulated bf16 is never taken
    assert inference_dtype(str(tiny_model_dir), "cpu") == torch.float32
