"""The server's jobs worker process, started with `tunesmith serve` and started again whenever it dies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tunesmith.console import err
from tunesmith.processes import dies_with_parent


def start_worker_process(config_path: Path) -> subprocess.Popen:
    """`tunesmith jobs worker CONFIG` as a child of the server (it dies with the server on Linux)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tunesmith.cli", "jobs", "worker", str(config_path)], preexec_fn=dies_with_parent()
    )


class SupervisedWorker:
    """The server's worker process, started again whenever it dies: the new one takes the interrupted job
    over (its heartbeat stopped) and resumes it from the last complete checkpoint. Calling it stops both."""

    def __init__(self, config_path: Path, check_s: float = 1.0):
        import threading

        self.config_path, self.check_s = config_path, check_s
        self.proc = start_worker_process(config_path)
        self.restarts = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="jobs-worker-supervisor", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.wait(self.check_s):
            code = self.proc.poll()
            if code is not None and not self._stopping.is_set():
                err.print(f"jobs worker exited with code {code}; starting it again")
                self.proc = start_worker_process(self.config_path)
                self.restarts += 1

    def __call__(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
