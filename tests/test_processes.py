"""Child processes that die with their parent (`tunesmith.processes`): the evaluation's fresh process, the
jobs worker's jobs and the server's worker are started this way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _start(tmp_path: Path, own_group: bool) -> tuple[subprocess.Popen, int, int]:
    """A parent that starts a sleeping child through `dies_with_parent`; the child writes its pid and group."""
    pidfile = tmp_path / "child.pid"
    child_code = (
        f"import os, time; open({str(pidfile)!r}, 'w').write(f'{{os.getpid()}} {{os.getpgid(0)}}'); time.sleep(60)"
    )
    (tmp_path / "parent.py").write_text(
        "import subprocess, sys\n"
        "from tunesmith.processes import dies_with_parent\n"
        f"subprocess.run([sys.executable, '-c', {child_code!r}], preexec_fn=dies_with_parent(own_group={own_group}))\n"
    )
    parent = subprocess.Popen([sys.executable, str(tmp_path / "parent.py")])
    deadline = time.time() + 30
    while time.time() < deadline and not (pidfile.exists() and pidfile.read_text()):
        time.sleep(0.05)
    child, group = map(int, pidfile.read_text().split())
    return parent, child, group


@linux_only
@pytest.mark.parametrize("own_group", [False, True])
def test_a_child_ends_with_its_parent(tmp_path, own_group):
    parent, child, group = _start(tmp_path, own_group)
    # its own group (a job: killpg stops all it started), or the parent's (Ctrl-C in a terminal reaches it)
    assert group == (child if own_group else os.getpgid(parent.pid))
    os.kill(parent.pid, signal.SIGKILL)  # as when `tunesmith run`, a jobs worker or the server is killed
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline and Path(f"/proc/{child}").exists() and "Z" not in _state(child):
        time.sleep(0.05)
    alive = Path(f"/proc/{child}").exists() and "Z" not in _state(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive, "the child outlived its parent"
