"""A child started with `die_with_parent` goes when its parent is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from fila.dev import lifetime

PARENT = """
import subprocess, sys, time
from fila.dev import lifetime
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(300)"],
    preexec_fn=lifetime.die_with_parent(),
)
print(child.pid, flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_child_ends_when_parent_is_killed() -> None:
    assert lifetime.die_with_parent() is not None
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _alive(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    still = _alive(child)
    if still:
        os.kill(child, signal.SIGKILL)
    assert not still, "child outlived its SIGKILLed parent"
