"""Every source format becomes the same canonical record; bad records raise with their field."""

from __future__ import annotations

import pytest

from tunesmith.data.converters import CONVERTERS, attach_meta, detect_format, format_of
from tunesmith.data.records import Conversation, Preference, RecordError

CHAT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]


@pytest.mark.parametrize(
    "fmt,row",
    [
        ("messages", {"messages": CHAT}),
        ("alpaca", {"instruction": "Hi", "input": "", "output": "Hello!"}),
        ("prompt_completion", {"prompt": "Hi", "completion": "Hello!"}),
        ("prompt_completion", {"prompt": [CHAT[0]], "completion": [CHAT[1]]}),
        ("sharegpt", {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}),
    ],
)
def test_sft_formats_become_the_same_conversation(fmt, row):
    assert format_of(row) == fmt
    record = CONVERTERS[fmt](row)
    assert isinstance(record, Conversation)
    assert record.messages == CHAT


@pytest.mark.parametrize(
    "fmt,row",
    [
        ("preference", {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}),
        (
            "preference",
            {"prompt": [CHAT[0]], "chosen": [CHAT[1]], "rejected": [{"role": "assistant", "content": "Go away."}]},
        ),
        ("preference", {"chosen": CHAT, "rejected": [CHAT[0], {"role": "assistant", "content": "Go away."}]}),
        (
            "openai_dpo",
            {
                "input": {"messages": [CHAT[0]]},
                "preferred_output": [CHAT[1]],
                "non_preferred_output": [{"role": "assistant", "content": "Go away."}],
            },
        ),
    ],
)
def test_preference_formats_become_the_same_pair(fmt, row):
    assert format_of(row) == fmt
    record = CONVERTERS[fmt](row)
    assert isinstance(record, Preference)
    assert record.prompt == [CHAT[0]]
    assert record.chosen == [CHAT[1]]
    assert record.rejected == [{"role": "assistant", "content": "Go away."}]


def test_alpaca_input_system_and_history():
    row = {
        "instruction": "Translate",
        "input": "bonjour",
        "output": "hello",
        "system": "Be brief.",
        "history": [["Hi", "Hello"]],
    }
    msgs = CONVERTERS["alpaca"](row).messages
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant"]
    assert msgs[3]["content"] == "Translate\n\nbonjour"


def test_sharegpt_system_and_tool_roles():
    row = {
        "system": "S",
        "conversations": [
            {"from": "human", "value": "q"},
            {"from": "gpt", "value": "a"},
            {"from": "observation", "value": "o"},
            {"from": "gpt", "value": "b"},
        ],
    }
    assert [m["role"] for m in CONVERTERS["sharegpt"](row).messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]


def test_openai_content_parts_and_weight():
    row = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "He"}, {"type": "text", "text": "llo"}]},
            {"role": "assistant", "content": "x", "weight": 0},
            {"role": "user", "content": "again"},
            {"role": "assistant", "content": "y"},
        ]
    }
    msgs = CONVERTERS["messages"](row).messages
    assert msgs[0]["content"] == "Hello" and msgs[1]["weight"] == 0


@pytest.mark.parametrize(
    "fmt,row,field,part",
    [
        (
            "messages",
            {"messages": [{"role": "User ", "content": "a"}, {"role": "asistant", "content": "b"}]},
            "messages[1].role",
            "did you mean 'assistant'",
        ),
        ("messages", {"messages": [{"role": "human", "content": "a"}]}, "messages[0].role", "write 'user'"),
        ("messages", {"messages": [{"role": "user", "content": None}]}, "messages[0].content", "null"),
        (
            "messages",
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content[0]",
            "only text",
        ),
        ("alpaca", {"instruction": "", "output": "x"}, "instruction", "empty"),
        ("prompt_completion", {"prompt": "x", "completion": 3}, "completion", "must be a string"),
        (
            "sharegpt",
            {"conversations": [{"from": "humn", "value": "a"}]},
            "conversations[0].from",
            "did you mean 'human'",
        ),
        ("openai_dpo", {"input": "x", "preferred_output": [], "non_preferred_output": []}, "input", "messages list"),
        (
            "preference",
            {"prompt": "p", "chosen": [{"role": "user", "content": "x"}], "rejected": "r"},
            "chosen[0].role",
            "must be 'assistant'",
        ),
    ],
)
def test_bad_records_name_the_field(fmt, row, field, part):
    with pytest.raises(RecordError) as info:
        CONVERTERS[fmt](row)
    assert info.value.field == field
    assert part in info.value.message


def test_detect_format_by_majority_and_unknown():
    rows = [{"messages": CHAT}, {"messages": CHAT}, {"prompt": "a", "completion": "b"}, "not a dict"]
    assert detect_format(rows) == "messages"
    assert detect_format([{"text": "x"}]) is None


def test_meta_label_and_id():
    record = attach_meta(CONVERTERS["messages"]({"messages": CHAT}), {"id": 7, "meta": {"topic": "greet"}}, "topic")
    assert record.meta == {"topic": "greet", "id": 7, "label": "greet"}
