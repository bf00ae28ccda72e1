"""Queue depth reads over one long-lived channel per process.

A channel opened and closed per read leaves aio-pika bookkeeping behind (a close callback and
its task per channel): a TUI polling the overview grew the control plane ~1.2 MB a minute.
"""

from __future__ import annotations

import asyncio
import contextlib

from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from fila import topology

READ_TIMEOUT = 10.0
"""A read the broker does not answer in this long gives up (and the channel is replaced)."""


class QueueReads:
    """Serialised depth reads; the channel is replaced only after a failed read closed it."""

    def __init__(self, connection: AbstractRobustConnection) -> None:
        self.connection = connection
        self._channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()

    async def counts(self, queue: str) -> tuple[int, int]:
        """Ready messages and consumers of `queue` (raises as a passive declare does)."""
        async with self._lock:
            try:
                if self._channel is None or self._channel.is_closed:
                    await self._drop()
                    self._channel = await self.connection.channel(publisher_confirms=False)
                async with asyncio.timeout(READ_TIMEOUT):
                    return await topology.queue_counts(self._channel, queue)
            except BaseException:
                # A missing queue closes the channel broker-side: start afresh next time.
                await self._drop()
                raise

    async def depth(self, queue: str) -> int:
        return (await self.counts(queue))[0]

    async def _drop(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()
