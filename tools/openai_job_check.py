"""A cookbook-sized fine-tuning job through tunesmith's OpenAI-compatible API, with the official client.

Starts `tunesmith serve` on the packaged base model (localhost, a throwaway folder, every default), uploads
40 short chat records in the shape of OpenAI's cookbook fine-tuning example (a recipe's ingredients ->
their generic names), creates a job with `n_epochs: 1`, follows it to the end, prints its events (the gate
verdicts among them) and, when it succeeded, asks the `ft:` model one question.

Run from the repository root:  .venv/bin/python tools/openai_job_check.py [--epochs 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import yaml

SYSTEM = "You are a helpful recipe assistant. You extract the generic ingredients from each recipe provided."
INGREDIENTS = {
    "chicken breast": "chicken",
    "ground beef": "beef",
    "pork chops": "pork",
    "salmon fillet": "salmon",
    "yellow onion": "onion",
    "red onion": "onion",
    "garlic cloves": "garlic",
    "cherry tomatoes": "tomatoes",
    "canned tomatoes": "tomatoes",
    "olive oil": "olive oil",
    "unsalted butter": "butter",
    "whole milk": "milk",
    "heavy cream": "cream",
    "cheddar cheese": "cheese",
    "parmesan": "cheese",
    "all-purpose flour": "flour",
    "brown sugar": "sugar",
    "white sugar": "sugar",
    "large eggs": "eggs",
    "long-grain rice": "rice",
    "spaghetti": "pasta",
    "penne": "pasta",
    "baby spinach": "spinach",
    "carrots": "carrots",
    "celery stalks": "celery",
    "fresh basil": "basil",
    "dried oregano": "oregano",
    "lemon juice": "lemon",
    "chicken broth": "broth",
    "black beans": "beans",
    "sweet potatoes": "sweet potatoes",
    "soy sauce": "soy sauce",
    "honey": "honey",
}
DISHES = ["Skillet", "Bake", "Soup", "Stew", "Casserole", "Stir-Fry", "Salad", "Pasta", "Bowl", "Pie"]
AMOUNTS = ["1 c.", "2 Tbsp.", "1/2 lb.", "1 lb.", "3", "2 c.", "1 tsp.", "1 can", "4 oz.", "1/4 c."]


def records(n: int = 40, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        chosen = rng.sample(sorted(INGREDIENTS), rng.randint(4, 7))
        title = f"{INGREDIENTS[chosen[0]].title()} {rng.choice(DISHES)}"
        listed = [f"{rng.choice(AMOUNTS)} {name}" for name in chosen]
        generic = list(dict.fromkeys(INGREDIENTS[name] for name in chosen))
        out.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {
                        "role": "user",
                        "content": f"Title: {title}\n\nIngredients: {json.dumps(listed)}\n\nGeneric ingredients: ",
                    },
                    {"role": "assistant", "content": json.dumps(generic)},
                ]
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", default="1", help="n_epochs sent with the job (a number or auto)")
    ap.add_argument("--keep", default=None, help="folder for the server's project (default: a temporary one)")
    args = ap.parse_args()

    from openai import OpenAI

    from tunesmith.cli.serve import with_jobs
    from tunesmith.config import load_config
    from tunesmith.serve.stage import build_app, start_in_thread

    folder = Path(args.keep or tempfile.mkdtemp(prefix="tunesmith-job-"))
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "tunesmith.yaml"
    config.write_text(yaml.safe_dump({"base_model": "smollm2-135m-instruct", "output_dir": "outputs"}))
    cfg = load_config(config)
    app = build_app(cfg)
    stop_jobs = with_jobs(app, cfg)
    running = start_in_thread(app)
    started = time.time()
    try:
        client = OpenAI(base_url=f"{running.url}/v1", api_key="not-needed", max_retries=0, timeout=120)
        data = folder / "recipes.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in records()))
        with open(data, "rb") as fh:
            uploaded = client.files.create(file=fh, purpose="fine-tune")
        epochs = args.epochs if args.epochs == "auto" else int(args.epochs)
        job = client.fine_tuning.jobs.create(
            model="smollm2-135m-instruct",
            training_file=uploaded.id,
            suffix="recipes",
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": epochs}}},
        )
        print(f"job {job.id} created; project in {folder}", flush=True)
        while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in ("succeeded", "failed", "cancelled"):
            time.sleep(10)
        events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
        for event in reversed(events):
            if event.type != "metrics":
                print(f"event: {event.message}")
        gates = next((e for e in events if getattr(e, "data", None) and "gates" in (e.data or {})), None)
        print(f"status: {job.status}; fine_tuned_model: {job.fine_tuned_model}; error: {job.error}")
        print(f"gate verdicts in the events: {'yes' if gates else 'no'}; wall time {time.time() - started:.0f} s")
        if job.status == "succeeded":
            question = records(1, seed=99)[0]["messages"][:-1]
            answer = client.chat.completions.create(model=job.fine_tuned_model, messages=question, max_tokens=64)
            print(f"ft model answers: {answer.choices[0].message.content!r}")
    finally:
        stop_jobs()
        running.stop()


if __name__ == "__main__":
    main()
