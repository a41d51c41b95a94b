"""`tunesmith init`: a commented example project to start from."""

from __future__ import annotations

import json
from pathlib import Path

from tunesmith.config import commented_yaml
from tunesmith.errors import TunesmithError

_EXAMPLES = [
    (
        "My order #1042 arrived with a cracked screen. I want a replacement.",
        {"category": "shipping", "priority": "high"},
    ),
    ("How do I change the email address on my account?", {"category": "account", "priority": "low"}),
    (
        "I was charged twice for the March invoice, please refund one charge.",
        {"category": "billing", "priority": "high"},
    ),
    ("The export button does nothing since yesterday's update.", {"category": "technical", "priority": "medium"}),
    ("Could you add a dark mode to the dashboard?", {"category": "feature_request", "priority": "low"}),
]
SYSTEM = 'Classify the support ticket. Answer with JSON: {"category": ..., "priority": ...}.'

_HEADER = """\
# tunesmith project. Every key is documented above its default; delete what you do not change.
# Check it with `tunesmith config tunesmith.yaml`; override any key on the command line:
#   tunesmith data check tunesmith.yaml data.max_length=1024
"""


def write_example_project(directory: Path) -> list[Path]:
    """Write tunesmith.yaml and data/train.jsonl into `directory`; refuses to overwrite."""
    config_path = directory / "tunesmith.yaml"
    data_path = directory / "data" / "train.jsonl"
    existing = [p for p in (config_path, data_path) if p.exists()]
    if existing:
        raise TunesmithError(f"{existing[0]} already exists; choose an empty folder or remove it first")
    data_path.parent.mkdir(parents=True, exist_ok=True)
    body = (
        commented_yaml()
        .replace(
            "  datasets: []",
            "  datasets:\n  - path: data/train.jsonl\n    format: auto\n    split: auto",
        )
        .replace("  label_field: null", "  label_field: category")
    )
    config_path.write_text(_HEADER + body + "\n", encoding="utf-8")
    with open(data_path, "w", encoding="utf-8") as fh:
        for text, answer in _EXAMPLES:
            fh.write(
                json.dumps(
                    {
                        "messages": [
                            {"role": "system", "content": SYSTEM},
                            {"role": "user", "content": text},
                            {"role": "assistant", "content": json.dumps(answer)},
                        ],
                        "category": answer["category"],
                    }
                )
                + "\n"
            )
    return [config_path, data_path]
