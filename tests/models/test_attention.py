"""eager_varlen attention: records of a packed window attend only within themselves, as if run alone."""

import json

import pytest
import torch

from tunesmith.models import load_model
from tunesmith.models.attention import VARLEN, record_lengths, register


@pytest.fixture(scope="module")
def models(tiny_model_dir):
    register()
    eager = load_model(str(tiny_model_dir), dtype=torch.float32)
    eager.set_attn_implementation("eager")
    varlen = load_model(str(tiny_model_dir), dtype=torch.float32)
    varlen.set_attn_implementation(VARLEN)
    return eager, varlen


def test_record_lengths_come_from_position_ids():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]])
    assert record_lengths(positions, 2, 6) == [[3, 2, 1], [6]]
    assert record_lengths(positions[:1], 3, 6) == [[3, 2, 1]] * 3  # one row of position ids for the whole batch


def test_a_packed_window_gives_each_record_what_it_gets_alone(models):
    eager, varlen = models
    torch.manual_seed(0)
    lengths = [7, 12, 5]
    ids = torch.randint(10, 200, (2, sum(lengths)))
    positions = torch.cat([torch.arange(n) for n in lengths]).expand(2, -1)
    packed = varlen(input_ids=ids, position_ids=positions, use_cache=False).logits
    masked = eager(input_ids=ids, position_ids=positions, use_cache=False).logits  # transformers' block mask
    torch.testing.assert_close(packed, masked, atol=1e-4, rtol=1e-4)
    start = 0
    for n in lengths:
        alone = eager(input_ids=ids[:, start : start + n], use_cache=False).logits
        torch.testing.assert_close(packed[:, start : start + n], alone, atol=1e-4, rtol=1e-4)
        start += n
    whole = eager(input_ids=ids, use_cache=False).logits  # without the record boundaries: different
    assert not torch.allclose(packed[:, lengths[0] :], whole[:, lengths[0] :], atol=1e-3)


def test_gradients_match_the_block_masked_eager_attention(models):
    eager, varlen = models
    torch.manual_seed(1)
    ids = torch.randint(10, 200, (1, 20))
    positions = torch.cat([torch.arange(9), torch.arange(11)])[None]
    grads = []
    for model in (eager, varlen):
        model.zero_grad()
        model(input_ids=ids, position_ids=positions, labels=ids, use_cache=False).loss.backward()
        grads.append(model.model.layers[0].self_attn.q_proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_padded_generation_falls_back_to_sdpa_with_the_same_text(models, tiny_model_dir, tiny_tok):
    eager, varlen = models
    tiny_tok.padding_side = "left"
    inputs = tiny_tok(["hello there, how are you", "hi"], return_tensors="pt", padding=True)
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=tiny_tok.pad_token_id)
    assert torch.equal(varlen.generate(**inputs, **kwargs), eager.generate(**inputs, **kwargs))


def test_training_on_cpu_chooses_it_and_a_saved_model_does_not_name_it(tmp_path, tiny_model_dir):
    from tunesmith.config import TrainConfig
    from tunesmith.train.adapters import load_for_training

    model = load_for_training(str(tiny_model_dir), TrainConfig(adapter="none"), precision="fp32")
    assert model.config._attn_implementation == VARLEN
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert VARLEN not in json.dumps(saved)  # loading elsewhere must not need tunesmith's kernel
