"""Training memory from a decoder's config: weights, gradients, optimizer states, activations, logits.

No library models activation memory (accelerate's `estimate-memory` counts weights only),
so it is written here. The activation terms are bytes that autograd keeps per token and
per layer in transformers' Llama-style decoder layer, counted with
`torch.autograd.graph.saved_tensors_hooks` on SmolLM2 in tunesmith's own training set-up
(bf16 autocast, eager attention on CPUs, peft LoRA with dropout):

    per token, per layer      LoRA on a bf16 base             full fine-tuning (fp32 master weights)
    residual stream           20h (two fp32 norm up-casts,     16h (four fp32 tensors)
                                   six bf16 tensors)
    q, k, v (k, v expanded    6·a·d                            6·a·d
      to every head)
    MLP (gate, up, act, x)    8I                               6I
    linear inputs copied      2·Σ in_features of the adapted   2·Σ in_features of every linear
                              modules (LoRA dropout)           (autocast's bf16 casts)
    attention (eager)         6·a·s (fp32 softmax + bf16 probs) 6·a·s
    attention (sdpa/flash)    2·a·d (output)                   2·a·d

h hidden size, I intermediate size, a heads, d head size, s window length. Full fine-tuning
under autocast also keeps a bf16 copy of every weight for the backward pass (2 bytes/param).
The LM head runs only where a trained token is predicted, each row at its own trained positions
(`train.sft.trained_positions_loss`), so logits cost trained tokens × vocabulary × 12 bytes (bf16
logits, their fp32 copy and log-softmax, their gradient).

On a CPU the process also holds the Python libraries (~0.5 GB measured here for torch,
transformers, peft, datasets and MLflow), and glibc's heap keeps freed activation blocks
for reuse rather than returning them, the more so the more the tensor shapes vary: peak RSS
measured 1.3× the live activation bytes on near-full 512-token windows
(`benchmarks/memory_estimate.py`), 1.7-2.0× on short classification records packed into
128- and 256-token windows of varying fill (`benchmarks/defaults_fit.py`). `ALLOCATOR_OVERHEAD`
takes 1.55 between them (both within ±20%; a fixed glibc mmap threshold brought the second
to 1.2× but halved throughput, so it is not used); on GPUs PyTorch's caching allocator
fragments less (1.1 assumed: not measured, no GPU here).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from tunesmith.errors import TunesmithError

Method = Literal["full", "lora", "qlora"]
GB = 1024**3
RUNTIME_BYTES = {"cpu": 0.5 * GB, "cuda": 0.6 * GB}  # CPU: libraries in RSS; CUDA: context + kernels
ALLOCATOR_OVERHEAD = {"cpu": 1.55, "cuda": 1.1}
LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Arch:
    """The shape of a Llama-style decoder (Llama, Mistral, Qwen2, SmolLM, ...), read from config.json."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    model_type: str = "llama"

    @classmethod
    def from_config(cls, config: dict, where: str = "config.json") -> Arch:
        try:
            h, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
            return cls(
                hidden=h,
                intermediate=int(config["intermediate_size"]),
                layers=int(config["num_hidden_layers"]),
                heads=heads,
                kv_heads=int(config.get("num_key_value_heads") or heads),
                head_dim=int(config.get("head_dim") or h // heads),
                vocab=int(config["vocab_size"]),
                tied=bool(config.get("tie_word_embeddings", False)),
                model_type=str(config.get("model_type", "llama")),
            )
        except KeyError as exc:
            raise TunesmithError(
                f"{where}: no {exc.args[0]}; the estimator knows Llama-style decoders "
                "(hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, "
                "vocab_size)"
            ) from None

    @classmethod
    def from_folder(cls, folder: str | Path) -> Arch:
        path = Path(folder) / "config.json"
        return cls.from_config(json.loads(path.read_text()), str(path))

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each projection in a layer."""
        h, q, kv, i = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return {
            "q_proj": (h, q),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (q, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def params(self) -> int:
        per_layer = sum(a * b for a, b in self.linear_shapes().values()) + 2 * self.hidden
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * per_layer + embeddings + self.hidden

    @property
    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.linear_shapes().values())


@dataclass
class Setup:
    """How training runs: what the estimate depends on besides the model."""

    micro_batch: int = 4
    seq_len: int = 2048
    """Longest window (packed) or record (unpacked) in a micro-batch."""
    keep_share: float = 1.0
    """Share of positions where some row predicts a trained token (the LM head runs only there)."""
    lora_r: int = 16
    lora_targets: tuple[str, ...] = LLAMA_LINEARS
    lora_dropout: float = 0.0
    bf16: bool = True
    device: Literal["cpu", "cuda"] = "cpu"
    attention: Literal["eager", "sdpa"] = "eager"
    gradient_checkpointing: bool = False
    gradient_accumulation: int = 1
    optimizer_bytes_per_param: int = 8
    """AdamW: two fp32 moments."""


@dataclass
class MemoryEstimate:
    method: str
    device: str
    trainable_params: int
    parts: dict[str, float] = field(default_factory=dict)
    """Bytes per component."""

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["parts_gb"] = {k: round(v / GB, 3) for k, v in d.pop("parts").items()}
        d["total_gb"] = round(self.total / GB, 3)
        return d


def lora_trainable(arch: Arch, r: int, targets: tuple[str, ...]) -> int:
    shapes = arch.linear_shapes()
    return arch.layers * sum(r * (a + b) for name, (a, b) in shapes.items() if name in targets)


def activation_bytes_per_token_layer(arch: Arch, method: Method, s: Setup) -> float:
    """Bytes autograd keeps per token and layer (see the module docstring for the table)."""
    h, a, d, i = arch.hidden, arch.heads, arch.head_dim, arch.intermediate
    e = 2 if s.bf16 else 4  # compute dtype
    full = method == "full"
    shapes = arch.linear_shapes()
    if full:
        stream = 16 * h if s.bf16 else 6 * 4 * h
        mlp = 3 * e * i
        copied = sum(a_in for a_in, _ in shapes.values()) if s.bf16 else 0  # autocast's casts of fp32 inputs
    else:
        stream = 20 * h if s.bf16 else 6 * 4 * h
        mlp = 4 * e * i
        copied = sum(shapes[n][0] for n in s.lora_targets if n in shapes) if s.lora_dropout > 0 else 0
        copied += sum(2 * s.lora_r for n in s.lora_targets if n in shapes)  # lora_A outputs
    qkv = 3 * e * a * d
    attention = (6 if s.bf16 else 4) * a * s.seq_len if s.attention == "eager" else e * a * d
    return stream + mlp + e * copied + qkv + attention


def estimate_memory(arch: Arch, method: Method, s: Setup) -> MemoryEstimate:
    """Peak training memory of one process (RSS on a CPU, device memory on a GPU)."""
    if method == "qlora" and s.device != "cuda":
        raise TunesmithError("QLoRA runs on CUDA GPUs only (bitsandbytes 4-bit kernels)")
    full = method == "full"
    trainable = arch.params if full else lora_trainable(arch, s.lora_r, s.lora_targets)
    if full:
        weights = 4 * arch.params  # fp32 master weights, bf16 autocast for the maths
    elif method == "qlora":  # NF4 with double quantisation ~4.127 bits; embeddings and head in bf16
        weights = arch.linear_params * 4.127 / 8 + 2 * (arch.params - arch.linear_params)
    else:
        weights = (2 if s.bf16 else 4) * arch.params
    parts = {"runtime": RUNTIME_BYTES[s.device], "weights": weights + (0 if full else 4 * trainable)}
    parts["gradients"] = 4 * trainable
    parts["optimizer"] = s.optimizer_bytes_per_param * trainable
    if full and s.bf16:
        parts["bf16_weight_copies"] = 2 * arch.params
    tokens = s.micro_batch * s.seq_len
    per_layer = activation_bytes_per_token_layer(arch, method, s)
    if s.gradient_checkpointing:  # each layer's input kept; one layer's activations live at a time
        layer_inputs = (4 if full else 2) * arch.hidden
        activations = tokens * (arch.layers * layer_inputs + per_layer)
    else:
        activations = tokens * arch.layers * per_layer
    kept = s.micro_batch * max(1, math.ceil(s.seq_len * s.keep_share))
    logits = kept * arch.vocab * 12
    overhead = ALLOCATOR_OVERHEAD[s.device]
    parts["activations"] = activations * overhead
    parts["logits"] = logits * overhead
    return MemoryEstimate(method, s.device, trainable, parts)
