"""`data check` on deliberately broken files: every bad record at its line, rejects kept exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.data.check import Source
from tunesmith.data.stage import run_check


def _msg(user="What is 2+2?", assistant="4"):
    return json.dumps({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]})


def _broken_folder(root: Path) -> tuple[Path, dict[tuple[str, int], str], int]:
    """Write broken files; return the folder, {(file, line): expected field/message part}, valid count."""
    folder = root / "broken"
    folder.mkdir()
    expected: dict[tuple[str, int], str] = {}
    chat_lines = [
        "\ufeff" + _msg(),  # 1 BOM, valid
        "",  # 2 blank: skipped
        _msg("Capital of France?", "Paris") + "\r",  # 3 CRLF, valid
        '{"messages": [{"role": "user", "content": "hi"}',  # 4 unparseable
        "[1, 2, 3]",  # 5 not an object
        json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "asistant", "content": "b"}]}),  # 6
        json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "  "}]}),  # 7
        json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": 42}]}),  # 8
        json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),  # 9
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "user", "content": "and?"},
                ]
            }
        ),  # 10
        json.dumps({"text": "no known format"}),  # 11
        _msg("Largest planet?", "Jupiter"),  # 12 valid
        json.dumps({"messages": [{"role": "user"}, {"role": "assistant", "content": "b"}]}),  # 13
        json.dumps({"messages": "hello"}),  # 14
        '{"messages": [{"role": "user", "content": "cut off',  # 15 truncated, no newline
    ]
    data = ("\r\n".join(chat_lines[:3]) + "\n" + "\n".join(chat_lines[3:])).encode("utf-8")
    (folder / "chat.jsonl").write_bytes(data)
    for line, part in {
        4: "not valid JSON",
        5: "JSON object",
        6: "did you mean 'assistant'",
        7: "is empty",
        8: "must be a string",
        9: "no assistant turn",
        10: "ends on a user turn",
        11: "messages is missing",
        13: "content",
        14: "must be a list",
        15: "truncated record",
    }.items():
        expected[("chat.jsonl", line)] = part

    prefs = [
        json.dumps({"prompt": "Say hi", "chosen": "Hi!", "rejected": "Go away."}),  # 1 valid
        json.dumps({"prompt": "Say hi", "chosen": "Hi!", "rejected": "Hi!"}),  # 2 chosen == rejected
        json.dumps({"prompt": "Say hi", "chosen": "Hi!"}),  # 3 missing rejected
        json.dumps({"prompt": "Say hi", "chosen": "", "rejected": "x"}),  # 4 empty chosen
    ]
    (folder / "prefs.jsonl").write_text("\n".join(prefs) + "\n", encoding="utf-8")
    expected.update(
        {("prefs.jsonl", 2): "same as chosen", ("prefs.jsonl", 3): "rejected", ("prefs.jsonl", 4): "is empty"}
    )

    alpaca = [
        json.dumps({"instruction": "Translate", "input": "bonjour", "output": "hello"}),  # 1 valid
        json.dumps({"instruction": "Translate", "input": "merci"}),  # 2 missing output
        json.dumps({"instruction": ["x"], "output": "y"}),  # 3 wrong type
    ]
    (folder / "alpaca.jsonl").write_text("\n".join(alpaca) + "\n", encoding="utf-8")
    expected.update({("alpaca.jsonl", 2): "output", ("alpaca.jsonl", 3): "must be a string"})

    # invalid UTF-8 on line 2
    (folder / "latin1.jsonl").write_bytes(_msg().encode() + b"\n" + '{"messages": "caf\xe9"}'.encode("latin-1") + b"\n")
    expected[("latin1.jsonl", 2)] = "not valid UTF-8"

    # CSV with a multi-line quoted cell: the bad row starts on line 4
    (folder / "pairs.csv").write_text(
        'prompt,completion\n"Hello","Hi"\n"Multi\nline question","Answer"\n"Missing answer",""\n', encoding="utf-8"
    )
    expected[("pairs.csv", 5)] = "is empty"

    # JSON array: the second element (line 3) is bad
    (folder / "array.json").write_text(
        '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c"},\n  {"instruction": "d", "output": "e"}\n]\n',
        encoding="utf-8",
    )
    expected[("array.json", 3)] = "output"
    valid = 3 + 1 + 1 + 1 + 2 + 2  # chat, prefs, alpaca, latin1, csv, array
    return folder, expected, valid


def test_every_bad_record_reported_at_its_line(tmp_path):
    folder, expected, valid = _broken_folder(tmp_path)
    outcome = run_check([Source(folder)], tmp_path / "out", show_progress=False)
    report = outcome.report
    found: dict[tuple[str, int], list[str]] = {}
    for e in report["errors"]:
        found.setdefault((Path(e["file"]).name, e["line"]), []).append(f"{e['field']} {e['message']}")
    assert set(found) == set(expected), sorted(set(found) ^ set(expected))
    for key, part in expected.items():
        assert any(part in text for text in found[key]), (key, found[key])
    assert report["records"] == {"total": valid + len(expected), "valid": valid, "rejected": len(expected)}


def test_rejects_file_holds_exactly_the_rejected_records(tmp_path):
    folder, expected, _ = _broken_folder(tmp_path)
    run_check([Source(folder)], tmp_path / "out", show_progress=False)
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert {(Path(r["file"]).name, r["line"]) for r in rejects} == set(expected)
    chat = (folder / "chat.jsonl").read_bytes().decode("utf-8").split("\n")
    for r in rejects:
        assert r["reasons"] and all(x["message"] for x in r["reasons"])
        if Path(r["file"]).name == "chat.jsonl":  # the original line, unchanged (less its line end)
            assert r["raw"] == chat[r["line"] - 1].rstrip("\r")


def test_cli_exit_status_and_json_report(tmp_path):
    folder, expected, valid = _broken_folder(tmp_path)
    cmd = [
        sys.executable,
        "-m",
        "tunesmith.cli",
        "data",
        "check",
        str(folder),
        "--json",
        "--no-lengths",
        "--out",
        str(tmp_path / "cli"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["records"]["rejected"] == len(expected)
    assert {"file", "line", "field", "message"} <= set(report["errors"][0])
    for key in ("exact_duplicates", "near_duplicates", "pii", "leakage", "length"):
        assert key in report["quality"]
    assert "Traceback" not in proc.stderr

    good = tmp_path / "good.jsonl"
    good.write_text(_msg() + "\n" + _msg("Another?", "Yes") + "\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tunesmith.cli",
            "data",
            "check",
            str(good),
            "--no-lengths",
            "--out",
            str(tmp_path / "cli2"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_missing_file_is_a_clear_usage_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli", "data", "check", str(tmp_path / "nope.jsonl"), "--no-lengths"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "no such file" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("suffix", ["parquet", "dataset"])
def test_parquet_and_datasets_folders(tmp_path, suffix):
    from datasets import Dataset

    rows = [
        {"instruction": "Say hi", "input": "", "output": "Hi"},
        {"instruction": "Say bye", "input": "", "output": ""},
    ]
    ds = Dataset.from_list(rows)
    if suffix == "parquet":
        path = tmp_path / "d.parquet"
        ds.to_parquet(str(path))
    else:
        path = tmp_path / "saved"
        ds.save_to_disk(str(path))
    report = run_check([Source(path)], tmp_path / "out", show_progress=False).report
    assert report["records"] == {"total": 2, "valid": 1, "rejected": 1}
    assert report["errors"][0]["line"] == 2 and report["errors"][0]["field"] == "output"
