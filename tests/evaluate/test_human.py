"""Blind A/B export and import: models hidden, unblinding right, agreement and warnings."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys

import pytest
import yaml

from tunesmith.config import load_config
from tunesmith.errors import TunesmithError
from tunesmith.evaluate.human import COLUMNS, export_sheets, human_dir, import_sheets


@pytest.fixture
def project(tmp_path):
    config = tmp_path / "tunesmith.yaml"
    config.write_text(yaml.safe_dump({"output_dir": "out", "data": {"datasets": [{"path": "d.jsonl"}]}}))
    cfg = load_config(config)
    folder = cfg.output_path / "eval"
    folder.mkdir(parents=True)
    for model, answer in (("fine_tuned", "GOOD {i}"), ("base", "bad <script>alert({i})</script>")):
        rows = [
            {"prompt": [{"role": "user", "content": f"question {i}"}], "output": answer.format(i=i), "latency_s": 0.1}
            for i in range(12)
        ]
        (folder / f"predictions_{model}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return cfg


def _fill(cfg, path, choose, scores=None):
    """A rater's sheet: choose(item, text_1, text_2) -> '1' | '2' | 'tie'."""
    with open(human_dir(cfg) / "sheet.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["preferred"] = choose(int(r["item"]), r["response_1"], r["response_2"])
        for side in (1, 2):
            good = r[f"response_{side}"].startswith("GOOD")
            for c in ("accuracy", "tone", "completeness"):
                r[f"{c}_{side}"] = str(scores(good) if scores else (5 if good else 2))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_export_hides_the_models_and_randomises_order(project):
    folder = export_sheets(project)
    with open(folder / "sheet.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and list(rows[0]) == COLUMNS
    assert "fine_tuned" not in (folder / "sheet.csv").read_text() and "base" not in (folder / "form.html").read_text()
    firsts = {r["response_1"].startswith("GOOD") for r in rows}
    assert firsts == {True, False}  # both orders occur
    key = json.loads((folder / "key.json").read_text())["items"]
    for r in rows:
        expected = "fine_tuned" if r["response_1"].startswith("GOOD") else "base"
        assert key[r["item"]]["1"] == expected
    html = (folder / "form.html").read_text()
    assert "<script>alert(" not in html and "&lt;script&gt;alert(" in html  # model output is escaped


def test_import_unblinds_and_reports_agreement(project, tmp_path):
    export_sheets(project)
    prefer_good = lambda item, one, two: "1" if one.startswith("GOOD") else "2"  # noqa: E731
    sheets = [_fill(project, tmp_path / f"{name}.csv", prefer_good) for name in ("ana", "ben", "chen")]
    results = import_sheets(project, sheets)
    assert results["win_rate"]["model"] == "fine_tuned" and results["win_rate"]["mean"] == 1.0
    assert results["votes"] == {"fine_tuned": 36, "base": 0, "tie": 0}
    assert results["rubric"]["fine_tuned"]["accuracy"]["mean"] == 5.0
    assert results["rubric"]["base"]["tone"]["mean"] == 2.0
    assert results["agreement"]["accuracy"]["krippendorff_alpha"] == pytest.approx(1.0)
    assert "fleiss_kappa" in results["agreement"]["preferred"] and not results["warnings"]
    assert (human_dir(project) / "results.json").exists()


def test_low_agreement_is_flagged(project, tmp_path):
    export_sheets(project)
    rng = random.Random(3)
    sheets = [
        _fill(
            project,
            tmp_path / f"r{i}.csv",
            lambda *_: rng.choice(["1", "2", "tie"]),
            scores=lambda good: rng.randint(1, 5),
        )
        for i in range(2)
    ]
    results = import_sheets(project, sheets)
    assert "cohen_kappa" in results["agreement"]["preferred"]
    assert any("too low to trust" in w for w in results["warnings"])


def test_bad_sheet_values_name_file_line_and_field(project, tmp_path):
    export_sheets(project)
    sheet = _fill(project, tmp_path / "ana.csv", lambda *_: "1")
    rows = list(csv.DictReader(open(sheet)))
    rows[2]["preferred"], rows[4]["accuracy_1"] = "B", "9"
    with open(sheet, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(TunesmithError) as info:
        import_sheets(project, [sheet])
    message = str(info.value)
    assert f"{sheet}:4: field preferred: 'b'" in message and f"{sheet}:6: field accuracy_1: '9'" in message


def test_cli_eval_group_keeps_eval_config_and_adds_human(project, tmp_path):
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli", "eval", "human", "export", str(project.config_path), "--n", "5"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list(csv.DictReader(open(human_dir(project) / "sheet.csv")))) == 5
    proc = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli", "eval", "--help"], capture_output=True, text=True, env=env
    )
    assert "human" in proc.stdout and proc.returncode == 0
    proc = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli", "eval", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
