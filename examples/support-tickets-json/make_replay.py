"""Regenerate data/general_replay.jsonl: general questions answered by the base model itself.

Fine-tuning on tickets alone teaches SmolLM2-135M to answer *everything* in ticket JSON
(measured: regression suite pass rate 0.947 -> 0.421). Mixing in the base model's own
answers to general questions, without the ticket system prompt, keeps its plain-chat
behaviour ("self-distillation replay"): the model learns that JSON belongs to the ticket
prompt. The questions are written here from templates and share no item with tunesmith's
regression suite. Only answers that ended on the end-of-turn token are kept (204 of the
default 260).
Run (needs the packaged model): python examples/support-tickets-json/make_replay.py
Other sizes and seeds: make_replay.py --count 300 --seed 12 --out my_replay.jsonl
"""

from __future__ import annotations

import json
import random
from pathlib import Path

COUNTRIES = ["Canada", "Egypt", "Kenya", "Norway", "Peru", "Greece", "Portugal", "Australia", "India", "Mexico",
             "Sweden", "Ireland", "China", "Russia", "Argentina", "Poland", "Turkey", "Chile"]
WORDS = ["fast", "bright", "quiet", "strong", "empty", "early", "soft", "rich", "easy", "warm", "wet", "old"]
THINGS = ["grass", "snow", "a banana", "a tomato", "coal", "the sea", "an orange", "milk"]
TOPICS = ["why we sleep", "how rain forms", "what a volcano is", "why leaves change colour", "how a bicycle works",
          "what gravity does", "why the sea is salty", "how bees help plants", "what a computer does",
          "why we need water"]
TEMPLATES = [
    lambda r: f"What is the capital of {r.choice(COUNTRIES)}?",
    lambda r: f"What is {r.randint(11, 60)} + {r.randint(11, 40)}?",
    lambda r: f"What is {r.randint(2, 9)} times {r.randint(2, 9)}?",
    lambda r: f"What is the opposite of '{r.choice(WORDS)}'?",
    lambda r: f"Give one synonym for '{r.choice(WORDS)}'.",
    lambda r: f"What colour is {r.choice(THINGS)}?",
    lambda r: f"Explain in two sentences {r.choice(TOPICS)}.",
    lambda r: f"Write one friendly sentence wishing a colleague a good {r.choice(['weekend', 'holiday', 'trip'])}.",
    lambda r: f"Name {r.choice(['two', 'three'])} {r.choice(['vegetables', 'animals', 'colours', 'sports'])}.",
]


def prompts(count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    seen: list[str] = []
    while len(seen) < count:
        p = rng.choice(TEMPLATES)(rng)
        if p not in seen:
            seen.append(p)
    return seen


def main(count: int = 260, seed: int = 11, path: Path | None = None) -> None:
    import torch

    from tunesmith.evaluate.generate import generate
    from tunesmith.models import load_model, load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    model = load_model("smollm2-135m-instruct", dtype=torch.bfloat16)
    questions = prompts(count, seed)
    outs = generate(model, tok, [[{"role": "user", "content": q}] for q in questions], max_new_tokens=96, batch_size=16)
    path = path or Path(__file__).parent / "data" / "general_replay.jsonl"
    kept = 0
    with open(path, "w", encoding="utf-8") as fh:
        for q, o in zip(questions, outs):
            if o["stopped"] and o["output"]:
                fh.write(json.dumps({"messages": [{"role": "user", "content": q},
                                                  {"role": "assistant", "content": o["output"]}]}) + "\n")
                kept += 1
    print(f"wrote {kept} of {count} answers to {path}")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="General questions answered by the packaged base model.")
    ap.add_argument("--count", type=int, default=260)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    main(args.count, args.seed, args.out)
