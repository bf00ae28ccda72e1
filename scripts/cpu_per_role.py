"""Fila's CPU per voice note by role, each role measured alone (simulator/bench/roles.py).

    .venv/bin/python scripts/cpu_per_role.py [--notes 3000] [--json out.json]

Needs the services up (`fila services up`); runs on namespaces of its own, like `fila bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from fila.settings import get_settings
from simulator.bench import roles
from simulator.bench.harness import QUICK, Bench
from simulator.benchenv import isolated


async def measure(notes: int) -> dict[str, object]:
    async with isolated(get_settings()) as settings:
        bench = Bench(settings, QUICK, workers=1, limiter_procs=1)
        try:
            await bench.start_receiver()
            stub_port = int(settings.evolution_url.rsplit(":", 1)[1])
            return await roles.per_role(bench, stub_port, notes)
        finally:
            await bench.procs.stop_all()
            await bench.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notes", type=int, default=3000)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.notes))
    text = json.dumps(figures, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
