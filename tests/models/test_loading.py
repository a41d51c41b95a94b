"""Model resolution: clear errors for wrong paths; tiny models load like real ones."""

from __future__ import annotations

import pytest

from tunesmith.errors import ModelLoadError
from tunesmith.models import load_model, load_tokenizer, resolve_model


def test_tiny_model_loads_through_the_real_path(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    model = load_model(str(tiny_model_dir))
    assert tok.eos_token == "<|im_end|>" and model.config.eos_token_id == tok.eos_token_id
    assert model.num_parameters() < 100_000


def test_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(ModelLoadError, match="not a model folder"):
        resolve_model(str(tmp_path))


def test_missing_local_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_model(str(tmp_path / "missing"))


def test_hub_ids_pass_through():
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_unreachable_hub_model_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="could not load"):
        load_tokenizer("no-such-org/no-such-model-xyz")
