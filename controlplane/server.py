"""uvicorn serving the control plane, exiting 0 after a graceful SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Generator

import uvicorn
import uvloop

from fila.settings import Settings

GRACEFUL_SHUTDOWN_SECONDS = 20
"""Open requests get this long on SIGTERM; the lifespan's shutdown (feedback stop) follows."""


class _Server(uvicorn.Server):
    """uvicorn re-raises the signal it caught once stopped; a clean stop should exit 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(settings: Settings) -> None:
    from controlplane.app import create_app

    config = uvicorn.Config(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        loop="none",
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        lifespan="on",
    )
    uvloop.run(_Server(config).serve())
