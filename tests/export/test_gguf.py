"""GGUF export: the file reads back in transformers and in llama.cpp itself, splits text like the
tokenizer the model was trained with, carries the chat template and stops at the end of a turn."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tunesmith.export.gguf_file import ExportError, pre_tokenizer, write_gguf
from tunesmith.export.llama import open_gguf
from tunesmith.export.ollama import CHECKS, chat_format, go_template, modelfile, render_like_ollama

# make test installs llama-cpp-python and Go; there a missing one fails, never skips
REQUIRED = os.environ.get("TUNESMITH_REQUIRE_ENGINES") == "1"
TEXT = 'Order #4521: 3 × "Router X200" — 129.99$ each?  <|im_start|>user\nDon\'t {"a": [1, 22, 333]}'


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        if REQUIRED:
            raise
        pytest.skip("llama-cpp-python is not installed (make test installs it)")
    return llama_cpp


def _logits(folder: Path, ids: list[int]):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].numpy()


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf")
    return {q: write_gguf(tiny_model_dir, out / f"tiny-{q}.gguf", quant=q) for q in ("f16", "q8_0")}


def test_gguf_reads_back_in_transformers_with_the_same_logits(tiny_model_dir, tiny_gguf, tiny_tok):
    import torch
    from transformers import AutoModelForCausalLM

    ids = tiny_tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, return_dict=True
    )["input_ids"]
    path = tiny_gguf["f16"]
    back = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    with torch.no_grad():
        got = back(torch.tensor([ids])).logits[0, -1].numpy()
    want = _logits(tiny_model_dir, ids)
    assert abs(got - want).max() < 1e-2 * max(1.0, abs(want).max())  # f16 weights, q and k re-permuted on read


def test_llama_cpp_computes_the_same_next_token_logits(tiny_model_dir, tiny_gguf, tiny_tok):
    _llama_cpp()
    ids = tiny_tok("The quick brown fox", add_special_tokens=False)["input_ids"]
    want = _logits(tiny_model_dir, ids)
    for quant, tolerance in (("f16", 0.02), ("q8_0", 0.08)):
        llm = open_gguf(tiny_gguf[quant], n_ctx=256, logits_all=True)
        assert llm.tokenize(b"The quick brown fox", add_bos=False) == ids
        llm.eval(ids)
        got = llm.scores[len(ids) - 1]
        assert abs(got - want).max() < tolerance * max(1.0, abs(want).max()), quant
        assert int(got.argmax()) == int(want.argmax())


def test_the_file_carries_the_chat_template_and_end_of_turn(tiny_gguf, tiny_tok):
    import gguf

    reader = gguf.GGUFReader(tiny_gguf["f16"])
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("tokenizer.ggml.token")}
    assert fields["tokenizer.chat_template"] == tiny_tok.chat_template
    assert fields["tokenizer.ggml.eos_token_id"] == tiny_tok.convert_tokens_to_ids("<|im_end|>")
    assert fields["tokenizer.ggml.pre"] == "gpt-2"
    _llama_cpp()
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
    ]
    llm = open_gguf(tiny_gguf["f16"], n_ctx=256)
    template = llm.metadata["tokenizer.chat_template"]
    formatted = Jinja2ChatFormatter(template, eos_token="<|im_end|>", bos_token="<|im_start|>")(messages=conversation)
    assert formatted.prompt == tiny_tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)


def test_unknown_tokenizers_and_architectures_name_the_way_out(tmp_path, tiny_model_dir):
    with pytest.raises(ExportError, match="convert_hf_to_gguf"):
        pre_tokenizer({"pre_tokenizer": {"type": "Metaspace"}})
    assert (
        pre_tokenizer(
            {
                "pre_tokenizer": {
                    "type": "Sequence",
                    "pretokenizers": [
                        {"type": "Digits", "individual_digits": True},
                        {"type": "ByteLevel", "use_regex": True},
                    ],
                }
            }
        )
        == "smollm"
    )
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ExportError, match="LlamaForCausalLM.*GPT2LMHeadModel"):
        write_gguf(other, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_modelfile_template_follows_the_chat_template(tiny_tok):
    fmt = chat_format(tiny_tok)
    for messages in CHECKS:
        assert render_like_ollama(fmt, messages) == tiny_tok.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
    text = modelfile("m.gguf", tiny_tok, system="Classify the ticket.")
    assert text.startswith("FROM ./m.gguf\n") and 'PARAMETER stop "<|im_end|>"' in text
    assert 'SYSTEM """Classify the ticket."""' in text


GO_RENDER = """package main

import (
	"encoding/json"
	"os"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

func main() {
	source, _ := os.ReadFile(os.Args[1])
	var data struct{ Messages []Message }
	json.Unmarshal([]byte(os.Args[2]), &data.Messages)
	t := template.Must(template.New("m").Parse(string(source)))
	if err := t.Execute(os.Stdout, data); err != nil {
		panic(err)
	}
}
"""


def test_modelfile_template_renders_in_go_as_the_tokenizer_does(tiny_tok, tmp_path):
    """Ollama renders TEMPLATE with Go's text/template: render it with Go itself."""
    go = shutil.which("go")
    if go is None:
        if REQUIRED:
            raise AssertionError("make test needs Go to check the Modelfile template: apt-get install golang-go")
        pytest.skip("Go is not installed")
    (tmp_path / "render.go").write_text(GO_RENDER)
    (tmp_path / "template.txt").write_text(go_template(chat_format(tiny_tok)))
    env = {**os.environ, "GOCACHE": str(tmp_path / "cache"), "GOPATH": str(tmp_path / "gopath"), "GO111MODULE": "off"}
    subprocess.run([go, "build", "-o", str(tmp_path / "render"), str(tmp_path / "render.go")], check=True, env=env)
    for messages in CHECKS:
        rendered = subprocess.run(
            [str(tmp_path / "render"), str(tmp_path / "template.txt"), json.dumps(messages)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert rendered == tiny_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
