"""py-spy on one ingest and one delivery worker while `fila bench --quick --only endToEnd` runs.

    .venv/bin/python scripts/profile_e2e.py /tmp/perf/e2e    # writes e2e.ingest, e2e.delivery

Raw (collapsed) stacks, 15 s at 100 Hz each, taken once the ingest worker is busy, of the
thread holding the GIL only (`--gil`): without it, time the thread spends descheduled inside a
socket write that woke a peer on the same core counts as work. Even so the profile chooses
where to look, and `/proc` CPU time judges a change (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
_TICK = os.sysconf("SC_CLK_TCK")


def workers(role: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"fila" in argv and b"worker" in argv and role.encode() in argv:
            found.append(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/fila-e2e-profile"
    with Path(out + ".log").open("w") as log:
        profile(out, log)
    print(f"{out}.ingest {out}.delivery (bench output in {out}.log)")


def profile(out: str, log: IO[str]) -> None:
    bench = subprocess.Popen(
        [str(ROOT / ".venv/bin/fila"), "bench", "--quick", "--only", "endToEnd"],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 400
    while time.time() < deadline and bench.poll() is None:
        time.sleep(1)
        pids = workers("ingest")
        if not pids or not workers("delivery"):
            continue
        try:
            before = cpu_seconds(pids[0])
            time.sleep(1)
            if cpu_seconds(pids[0]) - before > 0.25:
                break
        except OSError:
            continue
    spies = [
        subprocess.Popen(
            [
                str(ROOT / ".venv/bin/py-spy"),
                "record",
                "--pid",
                str(workers(role)[0]),
                *("-d", "15", "-r", "100", "-f", "raw", "--nonblocking", "--gil"),
                *("-o", f"{out}.{role}"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for role in ("ingest", "delivery")
    ]
    for spy in spies:
        spy.wait()
    bench.wait()


if __name__ == "__main__":
    main()
