"""Fault injection for the reliability suite (tests/reliability): `$TUNESMITH_FAULT=<name>:<n>` kills
this process with SIGKILL at the named point, as a power cut or the OOM killer would. Never set
outside tests; costs one environment lookup."""

from __future__ import annotations

import os
import signal


def fault_point(name: str, n: int | str = "") -> None:
    if os.environ.get("TUNESMITH_FAULT") == f"{name}:{n}":
        os.kill(os.getpid(), signal.SIGKILL)
