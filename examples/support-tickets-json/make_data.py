"""Regenerate data/tickets.jsonl: synthetic support tickets -> JSON with fixed fields.

Deterministic (seeded). The tickets are written from templates with varied products,
details and urgency cues, so category, priority and product can be read off the text;
a few tickets carry contact details, as real tickets do (the data check flags them).
Run: python examples/support-tickets-json/make_data.py
"""

import json
import random
from pathlib import Path

SYSTEM = ("You turn customer support tickets into JSON. Reply with one JSON object with the keys "
          "category (billing, technical, account, shipping or feature_request), priority (low, medium, "
          "high or urgent), product and summary (at most 12 words).")
PRODUCTS = ["Mobile App", "Web Dashboard", "Public API", "Smart Thermostat", "Router X200", "Desktop Sync",
            "Payment Portal", "Analytics Suite"]
URGENCY = {
    "low": ["No rush on this.", "Whenever you have time.", "Just curious.", "Not urgent at all."],
    "medium": ["Would appreciate a fix this week.", "It is getting annoying.", "Please look into it.", ""],
    "high": ["This is blocking my work today.", "Please fix this soon, my team depends on it.",
             "I need this resolved today."],
    "urgent": ["URGENT: production is down for all our users!", "This is an emergency, we are losing money every minute.",
               "Critical outage, please respond immediately!"],
}
TEMPLATES = {
    "billing": [
        ("I was charged twice for my {product} subscription this month.", "Double charge on {product} subscription"),
        ("My invoice for {product} shows the wrong amount, ${amount} instead of ${amount2}.", "Wrong invoice amount for {product}"),
        ("Please refund the {product} renewal, I cancelled before the renewal date.", "Refund request for {product} renewal"),
        ("The {product} upgrade charged my card but my plan did not change.", "Paid {product} upgrade not applied"),
        ("I cannot download the receipt for my {product} payment.", "Cannot download {product} payment receipt"),
    ],
    "technical": [
        ("The {product} crashes every time I open the settings page.", "{product} crashes on settings page"),
        ("Since the last update the {product} will not connect, error code {code}.", "{product} connection fails with error {code}"),
        ("The {product} is extremely slow, pages take {n} seconds to load.", "{product} very slow to load"),
        ("Sync in {product} stopped working and my data is out of date.", "{product} sync stopped working"),
        ("I get a blank screen after logging into the {product}.", "Blank screen after login in {product}"),
    ],
    "account": [
        ("I forgot my password and the reset email for {product} never arrives.", "Password reset email for {product} not arriving"),
        ("How do I add a second user to my {product} account?", "Add second user to {product} account"),
        ("My {product} account got locked after too many login attempts.", "{product} account locked after failed logins"),
        ("Please delete my {product} account and all my data.", "Delete {product} account and data"),
        ("I want to change the email address on my {product} account.", "Change email on {product} account"),
    ],
    "shipping": [
        ("My {product} order #{order} has not arrived after {n} days.", "{product} order {order} not delivered"),
        ("The {product} I received is damaged, the box was crushed.", "{product} arrived damaged"),
        ("I received the wrong item instead of the {product} I ordered.", "Wrong item received instead of {product}"),
        ("Can I change the delivery address for my {product} order #{order}?", "Change delivery address for {product} order"),
        ("Tracking for my {product} shipment has not updated in {n} days.", "{product} shipment tracking not updating"),
    ],
    "feature_request": [
        ("It would be great if the {product} had a dark mode.", "Add dark mode to {product}"),
        ("Please add export to CSV in the {product}.", "Add CSV export to {product}"),
        ("Could the {product} support two-factor authentication?", "Add two-factor authentication to {product}"),
        ("I would love keyboard shortcuts in the {product}.", "Add keyboard shortcuts to {product}"),
        ("Can you add a weekly summary email to the {product}?", "Add weekly summary email to {product}"),
    ],
}
OPENERS = ["Hi,", "Hello team,", "Hey,", "Good morning,", "", "Dear support,"]
CONTACTS = ["You can reach me at {name}@example.com.", "Call me back at +1 415-555-{phone}.", ""]


def make(rng: random.Random) -> dict:
    category = rng.choice(sorted(TEMPLATES))
    template, summary = rng.choice(TEMPLATES[category])
    priority = rng.choice(["low", "medium", "medium", "high", "high", "urgent"] if category != "feature_request"
                          else ["low", "low", "medium"])
    slots = {"product": rng.choice(PRODUCTS), "amount": rng.randint(10, 99), "amount2": rng.randint(100, 500),
             "code": rng.randint(100, 999), "n": rng.randint(3, 30), "order": rng.randint(10000, 99999),
             "name": rng.choice(["ana", "li.wei", "sam", "priya", "tom"]), "phone": f"{rng.randint(0, 9999):04d}"}
    parts = [rng.choice(OPENERS), template.format(**slots), rng.choice(URGENCY[priority])]
    if rng.random() < 0.08:
        parts.append(rng.choice(CONTACTS).format(**slots))
    ticket = " ".join(p for p in parts if p)
    answer = {"category": category, "priority": priority, "product": slots["product"],
              "summary": summary.format(**slots)}
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ticket},
                         {"role": "assistant", "content": json.dumps(answer)}], "category": category}


def main(count: int = 400, seed: int = 7) -> None:
    rng = random.Random(seed)
    path = Path(__file__).parent / "data" / "tickets.jsonl"
    path.parent.mkdir(exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(count):
            fh.write(json.dumps(make(rng), ensure_ascii=False) + "\n")
    print(f"wrote {count} tickets to {path}")


if __name__ == "__main__":
    main()
