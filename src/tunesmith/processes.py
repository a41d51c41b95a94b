"""Child processes that die with their parent: the jobs worker's jobs, the server's worker, the evaluation's
fresh process.

`subprocess` has no option for it; on Linux the child asks the kernel (`prctl(PR_SET_PDEATHSIG, SIGKILL)`)
between fork and exec. Everything the child runs there is resolved before the fork: a child of a threaded
parent must not import (another thread may have held the import lock at the fork).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def dies_with_parent(*, own_group: bool = False) -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess`: the child is killed when its parent dies (Linux), and with
    `own_group` it leads a process group of its own (`os.killpg` of its pid then stops everything it
    started). Without `own_group` it stays in the parent's group, where Ctrl-C in a terminal reaches it."""
    steps: list[Callable[[], object]] = [os.setsid] if own_group else []
    if sys.platform.startswith("linux"):
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
        steps.append(lambda: prctl(PR_SET_PDEATHSIG, signal.SIGKILL))
    if not steps:
        return None

    def setup() -> None:
        for step in steps:
            step()

    return setup
