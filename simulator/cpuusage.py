"""CPU seconds used by process trees over a window (Linux /proc), to tell where time goes
when Fila's end-to-end figure falls short of its slowest hop.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of one process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def tree_cpu(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each named root pid plus its descendants (other roots excepted), now."""
    table: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat:
                table[int(entry.name)] = stat
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    result: dict[str, float] = {}
    named = set(roots.values())
    for name, root in roots.items():
        total, stack = 0.0, [root]
        while stack:
            pid = stack.pop()
            if pid in table:
                total += table[pid][1]
            # A descendant that is itself a named root is counted under its own name.
            stack.extend(c for c in children.get(pid, []) if c not in named)
        result[name] = total
    result["whole machine"] = machine_busy()
    return result


def usage(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Share of one core each tree used between two samples (1.0 = a whole core)."""
    if seconds <= 0:
        return {}
    return {
        name: round((after.get(name, 0.0) - before.get(name, 0.0)) / seconds, 2) for name in after
    }


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (every process, every helper), so far."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    values = [int(v) for v in first]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / _TICKS


REFERENCE_LOOP = 200_000
"""Iterations of the fixed pure-Python loop that measures how fast this machine runs right now."""


def reference_loop_ms() -> float:
    """CPU milliseconds (this thread's own) one fixed loop takes: a shared host's slow minutes
    show here as they show in every figure measured beside it."""
    started = time.thread_time()
    total = 0
    for i in range(REFERENCE_LOOP):
        total += i * i
    return (time.thread_time() - started) * 1000


class SpeedProbe:
    """The reference loop sampled in a thread every `every` seconds while the block runs."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="speed-probe", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(reference_loop_ms())

    def __enter__(self) -> SpeedProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def median_ms(self) -> float | None:
        return round(statistics.median(self.samples), 2) if self.samples else None
