"""CPU microseconds of one `queued` log line through Fila's real structlog processors.

.venv/bin/python scripts/log_line_cost.py [console|json] [--lines 20000]
"""

from __future__ import annotations

import argparse
import os
import time

import structlog

from fila import logging as flog
from fila.settings import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("renderer", choices=["console", "json"], nargs="?", default="console")
    parser.add_argument("--lines", type=int, default=20000)
    args = parser.parse_args()
    settings = get_settings().replace(log_json=args.renderer == "json")
    flog.setup(settings, "ingest")
    with open(os.devnull, "w") as sink:
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sink))
        log = flog.get("ingest")
        started = time.process_time()
        for i in range(args.lines):
            log.info(
                "queued",
                id=f"3EB0C1D2E3F4{i}",
                key=f"audio_1764620000000_inst-{i % 500}.ogg",
                bytes=32000,
                source="evolution",
                seconds=12,
            )
        spent = time.process_time() - started
    print(f"{args.renderer}: {spent / args.lines * 1e6:.1f} us per line")


if __name__ == "__main__":
    main()
