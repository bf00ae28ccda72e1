"""CPU seconds used by process trees over a window (Linux /proc), to tell where time goes
when Fila's end-to-end figure falls short of its slowest hop.
"""

from __future__ import annotations

import os
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
