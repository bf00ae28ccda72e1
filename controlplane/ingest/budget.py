"""Bytes of HTTP ingest bodies held at once: a burst of large voice notes waits, then gets 429.

Each request holds its body (and its parsed copy) until RabbitMQ confirms it; without a bound a
burst of 20 MiB bodies could take the control plane's memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from controlplane.errors import Busy


class ByteBudget:
    """Admits requests while their declared sizes fit; one request alone is always admitted."""

    def __init__(self, limit: int, wait: float) -> None:
        self.limit = limit
        self.wait = wait
        self.held = 0
        self._room = asyncio.Condition()

    def _fits(self, size: int) -> bool:
        return self.held == 0 or self.held + size <= self.limit

    @asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        async with self._room:
            try:
                await asyncio.wait_for(self._room.wait_for(lambda: self._fits(size)), self.wait)
            except TimeoutError:
                raise Busy(max(1, round(self.wait))) from None
            self.held += size
        try:
            yield
        finally:
            async with self._room:
                self.held -= size
                self._room.notify_all()
