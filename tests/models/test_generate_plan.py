"""How generation splits prompts into batches: even sizes, similar lengths, within the memory it may use."""

from tunesmith.models.generate import MAX_ROWS, plan_batches, row_bytes


def test_batches_are_even_and_sorted_by_prompt_length():
    lengths = [50 - i % 50 for i in range(130)]
    batches = plan_batches(lengths, 16, None)
    assert [len(b) for b in batches] == [65, 65]  # not 128 + 2
    assert sorted(i for b in batches for i in b) == list(range(130))
    assert max(lengths[i] for i in batches[0]) <= min(lengths[i] for i in batches[1])
    assert [len(b) for b in plan_batches(lengths[:10], 16, 4)] == [4, 3, 3]
    assert [len(b) for b in plan_batches(lengths[:MAX_ROWS], 16, None)] == [MAX_ROWS]
    assert plan_batches([], 16, None) == []


def test_auto_batches_split_until_their_kv_cache_fits():
    lengths = [100] * 64 + [1000] * 64
    per_row = lambda tokens: tokens * 1000  # noqa: E731
    batches = plan_batches(lengths, 100, None, per_row=per_row, budget=40 * 1100 * 1000)
    assert sorted(i for b in batches for i in b) == list(range(128))
    for b in batches:
        assert len(b) * per_row(max(lengths[i] for i in b) + 100) <= 40 * 1100 * 1000
    assert max(len(b) for b in batches) == 64  # the short prompts stay together; the long ones split
    assert plan_batches([5000], 100, None, per_row=per_row, budget=1) == [[0]]  # one row always goes


def test_row_bytes_counts_the_kv_cache_of_grouped_query_heads(tiny_model_dir):
    import torch
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model_dir)
    kv = 2 * config.num_hidden_layers * config.num_key_value_heads * (config.hidden_size // config.num_attention_heads)
    grown = row_bytes(config, torch.float32, 200) - row_bytes(config, torch.float32, 100)
    assert grown >= kv * 4 * 100  # at least the KV cache of 100 more tokens, in 4-byte floats
    assert row_bytes(config, torch.bfloat16, 100) < row_bytes(config, torch.float32, 100)


def test_a_prefix_tuning_adapter_decodes_through_peft(tiny_model_dir):
    """Prefix tuning puts its own prefix into the KV cache, so its rows go through peft's generate; LoRA and
    plain models take the decoder that drops finished rows. Both answer."""
    import torch
    from peft import LoraConfig, PrefixTuningConfig, get_peft_model

    from tunesmith.models import load_model, load_tokenizer
    from tunesmith.models.generate import drops_finished_rows, generate

    tok = load_tokenizer(str(tiny_model_dir))
    prompts = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "a longer question here"}]]
    for config, drops in (
        (PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4), False),
        (LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj"]), True),
        (None, True),
    ):
        model = load_model(str(tiny_model_dir), dtype=torch.float32)
        model = get_peft_model(model, config) if config else model
        assert drops_finished_rows(model) is drops
        outs = generate(model, tok, prompts, max_new_tokens=5, batch_size=2)
        assert [o["new_tokens"] for o in outs] and all(0 <= o["new_tokens"] <= 5 for o in outs)
