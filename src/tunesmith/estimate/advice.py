"""The whole training plan for a config (`tunesmith advise --config`): the pre-flight check's choices
(estimate/fit.py) with the memory, time and cost estimates (estimate/plan.py) here and on a GPU table.
It sits above both, so neither imports the other."""

from __future__ import annotations

from pathlib import Path

from tunesmith.config import ProjectConfig
from tunesmith.estimate.fit import fit_training
from tunesmith.estimate.memory import GB, MemoryEstimate, estimate_memory
from tunesmith.estimate.plan import (
    CPU_MFU,
    Plan,
    data_stats,
    flops_per_token,
    load_gpus,
    measured_throughput,
    method_of,
    model_arch,
    setup_for,
    this_machine,
)


def plan_for_config(
    cfg: ProjectConfig, *, gpus_path: str | Path | None = None, tokens_per_s: float | None = None
) -> Plan:
    """What `tunesmith advise --config` shows: the settings `train` would choose here, memory for full, LoRA
    and QLoRA here and on each GPU of the table, time and cost."""
    from tunesmith.hardware import matmul_peak_flops

    arch = model_arch(cfg)
    data = data_stats(cfg)
    fit = fit_training(cfg, data=data, strict=False)  # the settings `train` would choose here
    cfg = fit.cfg
    data.seq_len = int(cfg.data.max_length) if data.source.startswith("record") else data.seq_len
    configured = method_of(cfg.train.adapter)
    t = cfg.train
    epochs = float(t.num_epochs)
    if t.max_steps:
        epochs = t.max_steps * int(t.micro_batch_size) * int(t.gradient_accumulation_steps) / max(1, data.sequences)
    machine = this_machine()
    bf16 = fit.precision != "fp32"
    here_setup = setup_for(cfg, data, device=machine.kind, bf16=bf16)
    here: dict[str, MemoryEstimate | None] = {}
    for method in ("full", "lora", "qlora"):
        here[method] = (
            None if method == "qlora" and machine.kind != "cuda" else estimate_memory(arch, method, here_setup)
        )
    trainable = here[configured].trainable_params if here.get(configured) else 0
    fpt = flops_per_token(arch, configured, trainable, data.seq_len, data.keep_share)
    source = "given"
    if tokens_per_s is None:
        tokens_per_s = measured_throughput(cfg, configured)
        source = "measured by the last training run" if tokens_per_s else "unknown: pass --tokens-per-s"
    mfu, gpus = load_gpus(gpus_path)
    if tokens_per_s is None and machine.kind == "cuda":
        known = [g for g in gpus if g.name.split("-")[0].lower() in machine.description.lower()]
        if known:
            tokens_per_s = known[0].bf16_tflops * 1e12 * mfu / fpt
            source = f"estimated: {fpt / 1e9:.2f} GFLOP per token at {mfu:.0%} of the {known[0].name} peak"
    elif tokens_per_s is None:
        tokens_per_s = matmul_peak_flops(fit.precision) * CPU_MFU / fpt
        source = (
            f"estimated: {fpt / 1e9:.2f} GFLOP per token at {CPU_MFU:.0%} of this CPU's {fit.precision} matmul "
            f"peak, measured now ({fit.precision}: the precision training will use here)"
        )
    plan = Plan(cfg.base_model, arch, data, configured, epochs, machine, here, tokens_per_s, source, mfu)
    plan.fit = fit.to_dict()
    plan.caveats.extend(fit.warnings)
    if cfg.train.method != "sft":
        plan.caveats.append(
            f"modelled as SFT: {cfg.train.method.upper()} trains on chosen and rejected sequences, "
            "so expect about twice the activations and time (DPO adds a reference forward pass)"
        )
    plan.caveats.append("one device: DDP keeps a full copy per GPU; FSDP/DeepSpeed sharding is not modelled")
    gpu_setup = setup_for(cfg, data, device="cuda", bf16=True)
    for gpu in gpus:
        for method in ("full", "lora", "qlora"):
            est = estimate_memory(arch, method, gpu_setup)
            f = flops_per_token(arch, method, est.trainable_params, data.seq_len, data.keep_share)
            hours = plan.train_tokens * f / (gpu.bf16_tflops * 1e12 * mfu) / 3600
            plan.gpu_rows.append(
                {
                    "gpu": gpu.name,
                    "method": method,
                    "memory_gb": round(est.total / GB, 2),
                    "fits": est.total / GB <= gpu.memory_gb,
                    "hours": hours,
                    "usd": hours * gpu.usd_per_hour,
                }
            )
    return plan
