"""A merged Llama-architecture model folder written as one GGUF file for llama.cpp and Ollama.

Written by hand on top of the `gguf` package (its writer, tensor-name map, special-vocabulary
reader and quantisers) because the converter that knows every architecture,
llama.cpp's `convert_hf_to_gguf.py`, is a script in llama.cpp's source tree and not an
installable library. This covers what tunesmith trains by default: `LlamaForCausalLM` and
`MistralForCausalLM` with a byte-level BPE tokenizer (SmolLM, Llama 3, Mistral-Nemo style);
anything else gets an error that names that script.

What makes a GGUF answer like the transformers model it came from (the failures reported
most after export): the same pre-tokenizer split, the chat template and the end-of-turn
token in the file, and llama.cpp's order of the rotary halves in the q and k projections.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

QUANTS = ("f16", "q8_0")
_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")
_CONVERTER = (
    "llama.cpp's convert_hf_to_gguf.py (https://github.com/ggml-org/llama.cpp) converts the merged "
    "folder that `tunesmith registry export --format merged` writes"
)


class ExportError(TunesmithError):
    """A version cannot be written in the asked format; the message says why and what to do."""


def pre_tokenizer(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's name for the pre-tokenizer split in `tokenizer.json`.

    llama.cpp names each split it implements (`tokenizer.ggml.pre`) and picks its regex by that
    name; read from the tokenizer's own description, so the GGUF splits text exactly as the
    tokenizer the model was trained with (the packaged SmolLM2, converted from GGUF by
    transformers, splits digits the GPT-2 way: "gpt-2", not the original "smollm").
    """
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        pattern = steps[0].get("pattern", {}).get("Regex", "")
        if r"\p{N}{1,3}" in pattern and "(?i:'s|'t|'re|'ve|'m|'ll|'d)" in pattern:
            return "llama-bpe"  # Llama 3's split
    raise ExportError(
        f"the tokenizer's pre-tokenizer ({' + '.join(str(k) for k in kinds)}) is not one tunesmith's "
        f"GGUF writer knows (GPT-2, SmolLM, Llama 3 byte-level BPE); {_CONVERTER}"
    )


def _hparams(config: dict[str, Any]) -> dict[str, Any]:
    arch = (config.get("architectures") or ["?"])[0]
    if arch not in _ARCHITECTURES:
        raise ExportError(f"GGUF export covers {', '.join(_ARCHITECTURES)}; this model is {arch}. {_CONVERTER}")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise ExportError(
            f"rope scaling {rope.get('rope_type')!r} is not written by tunesmith's GGUF writer; {_CONVERTER}"
        )
    n_head = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    return {
        "n_layer": config["num_hidden_layers"],
        "n_head": n_head,
        "n_kv": config.get("num_key_value_heads") or n_head,
        "head_dim": head_dim,
        "theta": rope.get("rope_theta", config.get("rope_theta", 10000.0)),
        "tied": config.get("tie_word_embeddings", False),
    }


def permute(weight: Any, n_head: int) -> Any:
    """Reorder a q or k projection's rows from transformers' rotary layout (two halves per head)
    to llama.cpp's (interleaved pairs); the inverse of transformers' `reverse_permute` on GGUF load."""
    return (
        weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _vocabulary(folder: Path, n_vocab: int) -> tuple[list[str], list[int]]:
    """Tokens in id order as byte-level strings, with llama.cpp's token types (special tokens are
    CONTROL, other added tokens USER_DEFINED), padded to the embedding's rows as llama.cpp pads."""
    import gguf
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    vocab = tok.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    added = {i: a for i, a in tok.added_tokens_decoder.items()}
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(added[i].content)
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _tensor(data: Any, quant: str) -> tuple[Any, Any]:
    """The array to write and its GGML type: norms stay F32; matrices F16 or Q8_0 (rows of 32)."""
    import gguf
    import numpy as np

    data = data.astype(np.float32)
    if data.ndim < 2:
        return data, gguf.GGMLQuantizationType.F32
    if quant == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        qtype = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(data, qtype), qtype
    return data.astype(np.float16), gguf.GGMLQuantizationType.F16


def write_gguf(folder: Path, out_file: Path, *, quant: str = "f16", name: str | None = None) -> Path:
    """Write the merged model in `folder` (config, safetensors, tokenizer) to `out_file`, atomically."""
    import gguf
    from safetensors import safe_open

    if quant not in QUANTS:
        raise ExportError(f"--quant {quant!r} is not offered; choose one of {', '.join(QUANTS)}")
    config = json.loads((folder / "config.json").read_text())
    hp = _hparams(config)
    tokenizer_json = json.loads((folder / "tokenizer.json").read_text())
    if tokenizer_json.get("model", {}).get("type") != "BPE" or tokenizer_json.get("model", {}).get("byte_fallback"):
        raise ExportError(
            f"GGUF export covers byte-level BPE tokenizers; this one is "
            f"{tokenizer_json.get('model', {}).get('type')}. {_CONVERTER}"
        )
    n_vocab = config["vocab_size"]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name or folder.name)
    writer.add_context_length(config.get("max_position_embeddings", 4096))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(hp["n_layer"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(hp["n_head"])
    writer.add_head_count_kv(hp["n_kv"])
    writer.add_rope_freq_base(float(hp["theta"]))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-5)))
    writer.add_rope_dimension_count(hp["head_dim"])
    if hp["head_dim"] != config["hidden_size"] // hp["n_head"]:
        writer.add_key_length(hp["head_dim"])
        writer.add_value_length(hp["head_dim"])
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quant == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    tokens, types = _vocabulary(folder, n_vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer(tokenizer_json))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # merges, bos/eos/unk/pad ids, add_bos and the chat template, from the folder's tokenizer files
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=n_vocab)
    special.add_to_gguf(writer, quiet=True)
    if special.chat_template is None:
        raise ExportError(
            f"{folder} has no chat template; a GGUF without one answers in the wrong format. "
            "Export a version whose tokenizer carries its template"
        )

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, hp["n_layer"])
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise ExportError(f"{folder} holds no safetensors weights; export writes from a merged safetensors folder")
    for shard in shards:
        with safe_open(str(shard), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key.endswith("rotary_emb.inv_freq") or (hp["tied"] and key == "lm_head.weight"):
                    continue
                target = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if target is None:
                    raise ExportError(f"{key} has no GGUF name for a llama model; {_CONVERTER}")
                data = f.get_tensor(key).float().numpy()
                if key.endswith("q_proj.weight"):
                    data = permute(data, hp["n_head"])
                elif key.endswith("k_proj.weight"):
                    data = permute(data, hp["n_kv"])
                array, qtype = _tensor(data, quant)
                writer.add_tensor(target, array, raw_dtype=qtype)
    return finish(writer, tmp, out_file)


def finish(writer: Any, tmp: Path, out_file: Path) -> Path:
    """Write a GGUFWriter's header, metadata and tensors to `tmp`, then put the file in place at once."""
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out_file)
    return out_file
