"""Child processes that cannot outlive the process that started them (Linux)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that sends SIGTERM to the child when its parent dies, even by kill -9.

    A test run cut short or a demo killed hard would otherwise leave workers running.
    None where the kernel has no such option, so callers pass it straight to Popen.
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the option was set
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec
