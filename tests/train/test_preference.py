"""DPO on a tiny model raises the log-probability margin of chosen over rejected answers."""

from __future__ import annotations

import pytest
import torch

from tests.train.helpers import make_project, preference_rows
from tunesmith.config import load_config
from tunesmith.models import load_model, load_tokenizer
from tunesmith.models.merge import load_trained
from tunesmith.train.stage import run_train


def _margin(model, tok, prompt: str) -> float:
    """log p(chosen) - log p(rejected) for the answer tokens after the chat prompt."""
    context = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    scores = []
    for answer in ("yes", "no"):
        ids = tok(context + answer + tok.eos_token, add_special_tokens=False, return_tensors="pt")["input_ids"]
        n_ctx = len(tok(context, add_special_tokens=False)["input_ids"])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        targets = ids[0, 1:]
        scores.append(logp[torch.arange(len(targets)), targets][n_ctx - 1 :].sum().item())
    return scores[0] - scores[1]


def test_dpo_raises_the_chosen_margin(tmp_path, tiny_model_dir):
    config = load_config(
        make_project(
            tmp_path,
            tiny_model_dir,
            preference_rows(),
            method="dpo",
            max_steps=12,
            micro_batch_size=4,
            gradient_accumulation_steps=1,
            learning_rate=5e-3,
        )
    )
    result = run_train(config)
    tok = load_tokenizer(str(tiny_model_dir))
    base = load_model(str(tiny_model_dir)).eval()
    tuned = load_trained(result.model_dir, str(tiny_model_dir)).eval()
    prompt = "Is 7 a number? Answer yes or no."
    assert _margin(tuned, tok, prompt) > _margin(base, tok, prompt) + 0.1
    assert result.metadata["train_loss_last"] < 0.693


@pytest.mark.parametrize("method", ["orpo"])
def test_other_preference_methods_train_behind_the_same_config(tmp_path, tiny_model_dir, method):
    config = load_config(
        make_project(
            tmp_path,
            tiny_model_dir,
            preference_rows(),
            method=method,
            max_steps=6,
            micro_batch_size=4,
            gradient_accumulation_steps=1,
            learning_rate=5e-3,
        )
    )
    result = run_train(config)
    losses = [float(x) for x in _losses(result.run_dir)]
    assert (result.model_dir / "adapter_model.safetensors").exists()
    assert losses[-1] < losses[0]


def _losses(run_dir):
    import csv

    with open(run_dir / "metrics.csv", newline="") as fh:
        return [r["loss"] for r in csv.DictReader(fh) if r["loss"]]
