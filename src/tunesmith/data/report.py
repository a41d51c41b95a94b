"""The human-readable data report (Markdown beside the JSON)."""

from __future__ import annotations

from collections import Counter
from typing import Any


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_report(report: dict[str, Any], histogram: str | None = None, shown: int = 50) -> str:
    """Markdown for a `data check` report dict."""
    rec = report["records"]
    q = report["quality"]
    out = [
        "# Data check",
        "",
        _table(["records", "valid", "rejected"], [[rec["total"], rec["valid"], rec["rejected"]]]),
        "",
        "## Files",
        "",
        _table(
            ["file", "format", "split", "records", "valid", "rejected"],
            [
                [f["file"], f["format"] or "unknown", f["split"], f["records"], f["valid"], f["rejected"]]
                for f in report["files"]
            ],
        ),
        "",
    ]
    if report["errors"]:
        out += [
            f"## Rejected records ({rec['rejected']})",
            "",
            f"Every rejected record is in `{report['rejects_file']}` with its reasons.",
            "",
        ]
        out += [
            f"- `{e['file']}:{e['line']}` {('**' + e['field'] + '** ') if e['field'] else ''}{e['message']}"
            for e in report["errors"][:shown]
        ]
        if len(report["errors"]) > shown:
            out.append(f"- ... and {len(report['errors']) - shown} more in the JSON report")
        out.append("")
    out += [
        "## Quality",
        "",
        _table(
            ["check", "result"],
            [
                ["exact duplicates", q["exact_duplicates"]],
                [f"near-duplicates (Jaccard ≥ {q['near_dup_threshold']})", q["near_duplicates"]],
                [
                    "train/validation/test leakage",
                    q["leakage"]["pairs"] if q["leakage"]["checked"] else "not checked (one split)",
                ],
                ["records with PII", len({(p["file"], p["line"]) for p in q["pii"]})],
            ],
        ),
        "",
    ]
    out += _pii_and_length_lines(q, histogram)
    out += [
        "### Turns and roles",
        "",
        _table(["messages per record", "records"], [[k, v] for k, v in q["turns"].items()]),
        "",
        _table(["role", "messages"], [[k, v] for k, v in q["roles"].items()]),
        "",
    ]
    labels = q.get("labels")
    if labels and labels.get("counts"):
        out += [
            f"### Balance of `{labels['field']}` ({labels['classes']} classes, "
            f"most/least = {labels['imbalance_ratio']})",
            "",
            _table(["label", "records"], [[k, v] for k, v in labels["counts"].items()]),
            "",
        ]
    if report["warnings"]:
        kinds = Counter(w["message"].split(";")[0].split(" of ")[0] for w in report["warnings"])
        out += [f"## Warnings ({len(report['warnings']) + report.get('warnings_omitted', 0)})", ""]
        out += [f"- `{w['file']}:{w['line']}` {w['message']}" for w in report["warnings"][:shown]]
        if len(report["warnings"]) > shown:
            out.append(f"- ... and more in the JSON report ({len(kinds)} kinds)")
        out.append("")
    return "\n".join(out)


def _pii_and_length_lines(q: dict[str, Any], histogram: str | None) -> list[str]:
    """The PII kinds found, and the token lengths with what exceeds max_length."""
    out: list[str] = []
    if q["pii_counts"]:
        out += [
            "### PII found",
            "",
            _table(["kind", "occurrences"], [[k, v] for k, v in sorted(q["pii_counts"].items())]),
            "",
        ]
    length = q.get("length")
    if length and length.get("measured"):
        out += [
            "### Token lengths (real tokenizer and chat template)",
            "",
            _table(
                ["min", "mean", "p50", "p90", "p95", "p99", "max", f"> max_length ({length['max_length']})"],
                [
                    [
                        length["min"],
                        length["mean"],
                        length["p50"],
                        length["p90"],
                        length["p95"],
                        length["p99"],
                        length["max"],
                        length["over_max_length"],
                    ]
                ],
            ),
            "",
        ]
        if length["over_max_length"]:
            cut = length["tokens_cut"]
            out += [
                f"{length['over_max_length']} records exceed max_length; they are {cut['mean']} tokens too long on "
                f"average (at most {cut['max']}).",
                "",
            ]
        if histogram:
            out += [f"![token length histogram]({histogram})", ""]
    return out
