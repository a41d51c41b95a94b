"""Blind A/B human evaluation: export sheets for raters, import the filled ones, report.

    <output_dir>/eval/human/
      sheet.csv      one row per pair: prompt, response_1, response_2 (models hidden, order random)
      form.html      the same pairs as a standalone form; "Download CSV" saves a filled sheet
      key.json       which model wrote response_1 / response_2 (keep it from the raters)
      results.json   after import: win rates, rubric means, agreement

Raters fill `preferred` (1, 2 or tie) and 1-5 scores for accuracy, tone and completeness
of each response. Win rates and rubric means are averaged over raters per item first and
then bootstrapped over items (raters of one item are not independent observations).
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

from tunesmith.config import ProjectConfig
from tunesmith.errors import TunesmithError
from tunesmith.evaluate import metrics as m
from tunesmith.evaluate.agreement import agreement, landis_koch
from tunesmith.files import write_atomic, write_json
from tunesmith.paths import eval_dir, human_dir

RUBRIC = ("accuracy", "tone", "completeness")
COLUMNS = [
    "item",
    "prompt",
    "response_1",
    "response_2",
    "preferred",
    *[f"{c}_{side}" for side in (1, 2) for c in RUBRIC],
    "comment",
]


def _predictions(cfg: ProjectConfig, model: str) -> list[dict[str, Any]]:
    path = eval_dir(cfg) / f"predictions_{model}.jsonl"
    if not path.exists():
        raise TunesmithError(f"{path} not found; run `tunesmith eval {cfg.config_path or 'tunesmith.yaml'}` first")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _prompt_text(row: dict[str, Any]) -> str:
    turns = [t for t in row.get("prompt") or [] if t["role"] == "user"]
    return turns[-1]["content"] if turns else ""


def export_sheets(
    cfg: ProjectConfig, a: str = "fine_tuned", b: str = "base", n: int | None = None, seed: int | None = None
) -> Path:
    """Write sheet.csv, form.html and key.json for a blind comparison of models a and b."""
    left, right = _predictions(cfg, a), _predictions(cfg, b)
    rng = random.Random(cfg.seed if seed is None else seed)
    items = list(range(min(len(left), len(right))))
    rng.shuffle(items)
    items = items[:n] if n else items
    rows, key = [], {}
    for number, i in enumerate(items, 1):
        swap = rng.random() < 0.5
        first, second = (right[i], left[i]) if swap else (left[i], right[i])
        rows.append(
            {
                "item": number,
                "prompt": _prompt_text(left[i]),
                "response_1": first["output"],
                "response_2": second["output"],
            }
        )
        key[str(number)] = {"1": b if swap else a, "2": a if swap else b, "test_index": i}
    out = human_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows({**r, **{c: "" for c in COLUMNS if c not in r}} for r in rows)
    write_atomic(out / "sheet.csv", buffer.getvalue())
    write_json(out / "key.json", {"models": [a, b], "seed": cfg.seed if seed is None else seed, "items": key})
    write_atomic(out / "form.html", _form(rows))
    return out


_FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Blind comparison</title>
<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}
.pair{border:1px solid #ccc;border-radius:6px;padding:1em;margin:1em 0}.cols{display:flex;gap:1em}
.cols>div{flex:1;background:#f7f7f7;padding:.6em;white-space:pre-wrap}pre{white-space:pre-wrap}
select{margin:0 .4em}</style></head><body>
<h1>Blind comparison: {{ rows|length }} pairs</h1>
<p>Your name: <input id="rater" required> &middot; For each pair, pick the better response and score each
1 (poor) to 5 (excellent). The responses come from two systems in random order. When done, press
<b>Download CSV</b> and send the file back.</p>
{% for r in rows %}<div class="pair" data-item="{{ r.item }}"><h3>Pair {{ r.item }}</h3>
<pre>{{ r.prompt }}</pre><div class="cols">
{% for side in (1, 2) %}<div><b>Response {{ side }}</b><br>{{ r['response_' ~ side] }}<p>
{% for c in rubric %}{{ c }} <select name="{{ c }}_{{ side }}"><option></option>
{% for v in range(1, 6) %}<option>{{ v }}</option>{% endfor %}</select>{% endfor %}</p></div>{% endfor %}
</div><p>Better: <label><input type="radio" name="preferred-{{ r.item }}" value="1"> 1</label>
<label><input type="radio" name="preferred-{{ r.item }}" value="2"> 2</label>
<label><input type="radio" name="preferred-{{ r.item }}" value="tie"> tie</label>
&middot; Comment <input name="comment" size="50"></p></div>{% endfor %}
<button onclick="download()">Download CSV</button>
<script>
const columns = {{ columns|tojson }};
const rows = {{ rows|tojson }};
function cell(v){v=String(v??"");return /[",\\n]/.test(v)?'"'+v.replace(/"/g,'""')+'"':v;}
function download(){
  const lines=[columns.join(",")];
  document.querySelectorAll(".pair").forEach((el,i)=>{
    const r=Object.assign({},rows[i]);
    const p=el.querySelector("input[type=radio]:checked"); r.preferred=p?p.value:"";
    el.querySelectorAll("select").forEach(s=>r[s.name]=s.value);
    r.comment=el.querySelector("input[name=comment]").value;
    lines.push(columns.map(c=>cell(r[c])).join(","));});
  const name=(document.getElementById("rater").value||"rater").replace(/[^A-Za-z0-9_-]/g,"_");
  const a=document.createElement("a");
  a.href=URL.createObjectURL(new Blob([lines.join("\\n")+"\\n"],{type:"text/csv"}));
  a.download=name+".csv";a.click();}
</script></body></html>
"""


def _form(rows: list[dict[str, Any]]) -> str:
    from jinja2 import Environment

    return Environment(autoescape=True).from_string(_FORM).render(rows=rows, rubric=RUBRIC, columns=COLUMNS)


def read_sheet(path: Path) -> tuple[str, dict[int, dict[str, Any]]]:
    """(rater, item -> answers) from one filled sheet; every problem is reported as file:line:field."""
    if not path.exists():
        raise TunesmithError(f"{path} not found")
    problems, answers, rater = [], {}, path.stem
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("item", "preferred") if c not in (reader.fieldnames or [])]
        if missing:
            raise TunesmithError(
                f"{path}:1: missing column(s) {', '.join(missing)}; fill the sheet that "
                "`tunesmith eval human export` wrote, keeping its header"
            )
        for row in reader:
            line = reader.line_num
            rater = (row.get("rater") or "").strip() or rater
            try:
                item = int(row["item"])
            except (TypeError, ValueError):
                problems.append(f"{path}:{line}: field item: {row.get('item')!r} is not an item number")
                continue
            pref = (row.get("preferred") or "").strip().lower()
            if pref not in ("", "1", "2", "tie"):
                problems.append(f"{path}:{line}: field preferred: {pref!r}; write 1, 2 or tie (or leave it empty)")
            scores = {}
            for column in (f"{c}_{s}" for s in (1, 2) for c in RUBRIC):
                value = (row.get(column) or "").strip()
                if value and value not in {"1", "2", "3", "4", "5"}:
                    problems.append(
                        f"{path}:{line}: field {column}: {value!r}; write a whole number 1-5 or leave it empty"
                    )
                scores[column] = int(value) if value in {"1", "2", "3", "4", "5"} else None
            answers[item] = {"preferred": pref or None, **scores}
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise TunesmithError(f"{len(problems)} problem(s) in the filled sheets:\n  {shown}{more}")
    return rater, answers


def _rubric_means(table: dict[int, list[Any]], model: str) -> dict[str, Any]:
    """Each rubric criterion's mean for one model: per item over its raters, then over the items."""
    means = {}
    for c in RUBRIC:
        per_item = []
        for judged in table.values():
            values = [s[model][c] for _, s in judged if s and s[model][c] is not None]
            if values:
                per_item.append(sum(values) / len(values))
        mean, low, high = m.bootstrap_ci(per_item)
        means[c] = {"mean": round(mean, 3), "ci95": [round(low, 3), round(high, 3)], "items": len(per_item)}
    return means


def import_sheets(cfg: ProjectConfig, sheets: list[Path]) -> dict[str, Any]:
    """Unblind the filled sheets of several raters; win rates, rubric means and agreement."""
    key_path = human_dir(cfg) / "key.json"
    if not key_path.exists():
        raise TunesmithError(f"{key_path} not found; sheets must come from `tunesmith eval human export`")
    key = json.loads(key_path.read_text())
    a, b = key["models"]
    filled = [read_sheet(p) for p in sheets]
    raters = [r for r, _ in filled]
    if len(set(raters)) != len(raters):
        raise TunesmithError(f"two sheets name the same rater ({', '.join(raters)}); name files after the raters")
    items = sorted(int(i) for i in key["items"])
    for (_, answers), path in zip(filled, sheets):
        unknown = sorted(set(answers) - set(items))
        if unknown:
            raise TunesmithError(f"{path}: item(s) {unknown[:5]} are not in key.json; was it exported for another run?")

    def unblind(item: int, answer: dict[str, Any] | None) -> tuple[str | None, dict[str, dict[str, int | None]]]:
        if answer is None:
            return None, {}
        sides = key["items"][str(item)]
        pref = answer["preferred"]
        winner = "tie" if pref == "tie" else sides[pref] if pref else None
        scores = {sides[str(s)]: {c: answer[f"{c}_{s}"] for c in RUBRIC} for s in (1, 2)}
        return winner, scores

    table = {i: [unblind(i, answers.get(i)) for _, answers in filled] for i in items}
    win_share, counts = [], {a: 0, b: 0, "tie": 0}
    for judged in table.values():
        votes = [w for w, _ in judged if w]
        for w in votes:
            counts[w] += 1
        if votes:
            win_share.append(sum(1.0 if w == a else 0.5 if w == "tie" else 0.0 for w in votes) / len(votes))
    mean, low, high = m.bootstrap_ci(win_share)
    results: dict[str, Any] = {
        "raters": raters,
        "items": len(items),
        "items_judged": len(win_share),
        "models": [a, b],
        "votes": counts,
        "win_rate": {
            "model": a,
            "mean": round(mean, 4),
            "ci95": [round(low, 4), round(high, 4)],
            "note": "share of judgments preferring it, ties counted half, averaged per item",
        },
        "rubric": {},
        "agreement": {},
    }
    results["rubric"] = {model: _rubric_means(table, model) for model in (a, b)}
    if len(raters) >= 2:
        results["agreement"]["preferred"] = agreement([[w for w, _ in judged] for judged in table.values()])
        for c in RUBRIC:
            ratings = [[s[model][c] if s else None for _, s in judged] for judged in table.values() for model in (a, b)]
            results["agreement"][c] = agreement(ratings, level="ordinal")
    warnings = []
    for what, stats in results["agreement"].items():
        value = stats.get("cohen_kappa", stats.get("fleiss_kappa", stats.get("krippendorff_alpha")))
        alpha = stats.get("krippendorff_alpha")
        worst = (
            min(v for v in (value, alpha) if isinstance(v, float))
            if any(isinstance(v, float) for v in (value, alpha))
            else None
        )
        if worst is not None and worst < cfg.gate.min_agreement:
            warnings.append(
                f"agreement on {what} is {worst:.2f} ({landis_koch(worst)}), below "
                f"{cfg.gate.min_agreement}: too low to trust these judgments; clarify the rubric and re-rate"
            )
    results["warnings"] = warnings
    write_json(human_dir(cfg) / "results.json", results)
    return results
