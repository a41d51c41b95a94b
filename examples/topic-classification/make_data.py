"""Regenerate data/questions.jsonl: the English questions of the `chatterbot-corpus` package -> their topic.

chatterbot-corpus (PyPI, BSD-3) ships conversations in one YAML file per topic; the first
line of each conversation is a question or remark a user might send. Each distinct first
line becomes a record whose answer is the file's topic (21 topics). A line that appears
under two topics is dropped (it has no single right answer); a line repeated within a topic
is kept once. The package is found with `importlib.util.find_spec`, not imported.
It also writes ../new-user-topics/data/questions.jsonl: the same questions and topics without the classifier
prompt, as a new user's own labelled data would come.
Run: python examples/topic-classification/make_data.py
"""

import importlib.util
import json
from collections import Counter, defaultdict
from pathlib import Path

import yaml

NAMES = {"botprofile": "bot profile", "tech_support": "tech support", "ai": "ai"}


def topic_name(stem: str) -> str:
    return NAMES.get(stem, stem.replace("_", " "))


def corpus_folder() -> Path:
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("chatterbot-corpus is not installed: pip install chatterbot-corpus==1.3.3")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "english"


def main() -> None:
    folder = corpus_folder()
    questions: dict[str, list[str]] = defaultdict(list)
    for path in sorted(folder.glob("*.yml")):
        for conversation in yaml.safe_load(path.read_text(encoding="utf-8"))["conversations"]:
            if conversation and isinstance(conversation[0], str) and conversation[0].strip():
                text = " ".join(conversation[0].split())
                if text not in questions[path.stem]:
                    questions[path.stem].append(text)
    topics = sorted(topic_name(stem) for stem in questions)
    system = (
        "Classify the user's message into one of these topics: " + ", ".join(topics) + ". Reply with the topic only."
    )
    seen = Counter(q for qs in questions.values() for q in qs)
    records, dropped = [], 0
    for stem, qs in sorted(questions.items()):
        for i, q in enumerate(qs):
            if seen[q] > 1:
                dropped += 1
                continue
            records.append(
                {
                    "id": f"{stem}-{i}",
                    "topic": topic_name(stem),
                    "messages": [
                        {"role": "system", "content": system},
                        {"role": "user", "content": q},
                        {"role": "assistant", "content": topic_name(stem)},
                    ],
                }
            )
    out = Path(__file__).parent / "data" / "questions.jsonl"
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    plain = Path(__file__).parent.parent / "new-user-topics" / "data" / "questions.jsonl"
    plain.parent.mkdir(parents=True, exist_ok=True)
    plain.write_text(
        "".join(json.dumps({**r, "messages": r["messages"][1:]}, ensure_ascii=False) + "\n" for r in records),
        encoding="utf-8",
    )
    counts = Counter(r["topic"] for r in records)
    print(f"wrote {len(records)} records in {len(counts)} topics to {out} ({dropped} lines under two topics dropped)")
    print(", ".join(f"{t} {n}" for t, n in counts.most_common()))


if __name__ == "__main__":
    main()
