"""Large files stream: memory grows with the number of records, not with the size of the file."""

from __future__ import annotations

import json
import random
import subprocess
import sys

_MEASURE = """
import resource, sys
from pathlib import Path
from tunesmith.data.check import Source
from tunesmith.data.stage import run_check
run_check([Source(Path(sys.argv[3]))], Path(sys.argv[2]), show_progress=False)  # warm-up: lazy imports, metadata
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcome = run_check([Source(Path(sys.argv[1]))], Path(sys.argv[2]), show_progress=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(outcome.report["records"]["valid"], (after - before) * 1024)
"""


def _write(path, records: int, words: int) -> int:
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(5000)]
    with open(path, "w") as fh:
        for i in range(records):
            fh.write(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": " ".join(rng.choices(vocab, k=words))},
                            {"role": "assistant", "content": f"answer {i}"},
                        ]
                    }
                )
                + "\n"
            )
    return path.stat().st_size


def test_checking_a_big_file_does_not_hold_it_in_memory(tmp_path):
    size = _write(tmp_path / "big.jsonl", records=1000, words=3000)  # ~17 MB
    _write(tmp_path / "small.jsonl", records=20, words=3000)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEASURE,
            str(tmp_path / "big.jsonl"),
            str(tmp_path / "out"),
            str(tmp_path / "small.jsonl"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    valid, grown = map(int, proc.stdout.split())
    assert valid == 1000
    assert size > 15e6
    assert grown < 0.25 * size, f"peak memory grew by {grown / 1e6:.1f} MB while checking a {size / 1e6:.1f} MB file"
