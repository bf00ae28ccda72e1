"""Reports messages that RabbitMQ dead-lettered itself (the 1 h TTL): a `queue.error` each.

They already sit in the dead letters; this makes sure no expiry goes by unannounced.
"""

from __future__ import annotations

import asyncio
import contextlib

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from fila import logging as flog
from fila import stats
from fila.dlq import describe
from fila.settings import Settings
from fila.topology import GLOBAL_DLQ, declare_expiry_watch
from workers import monitoring
from workers.outcomes import queue_error

log = flog.get("expiry")

REQUEUE_PAUSE_SECONDS = 1.0
"""A report that could not be queued waits this long before its message is offered again."""


class ExpiryReporter:
    """Consumes the expiry watch queue on its own channel."""

    def __init__(
        self,
        settings: Settings,
        channel: AbstractChannel,
        publish_channel: AbstractChannel,
        counters: stats.Counters,
    ) -> None:
        self.settings = settings
        self.channel = channel
        self.publish_channel = publish_channel
        self.counters = counters
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None

    async def start(self) -> None:
        await self.channel.set_qos(prefetch_count=20)
        self._queue = await declare_expiry_watch(self.channel, self.settings)
        self._tag = await self._queue.consume(self._on_message)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            await self._report(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # unacked on a live channel would hold a prefetch slot for good
            log.warning("expiry report failed", message_id=message.message_id, error=str(exc))
            await asyncio.sleep(REQUEUE_PAUSE_SECONDS)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)

    async def _report(self, message: AbstractIncomingMessage) -> None:
        """Report once queued, then ack; a report that cannot be queued waits in the queue."""
        letter = describe(message, GLOBAL_DLQ)
        log.warning("message expired in global.messages", message_id=letter.id)
        queued = await monitoring.publish(
            self.publish_channel,
            self.settings,
            queue_error(
                self.settings,
                {
                    "error": f"Delivery failed: {letter.reason}",
                    "stage": letter.stage,
                    "messageId": letter.id,
                    "reason": letter.reason,
                    "statusCode": letter.statusCode,
                    "attempts": letter.attempts,
                    "failedAt": letter.failedAt,
                },
                letter.instance,
            ),
        )
        if not queued:
            await asyncio.sleep(REQUEUE_PAUSE_SECONDS)
            await message.nack(requeue=True)
            return
        try:
            await self.counters.bump(letter.instance, {stats.DELIVERY_FAILED: 1})
        except Exception as exc:  # the report is out: a lost count must not hold the message
            log.warning("expiry count not written", message_id=letter.id, error=str(exc))
        await message.ack()

    async def stop(self) -> None:
        if self._queue and self._tag:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._tag)
