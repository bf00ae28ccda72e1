"""Everything ingest publishes, each one confirmed by RabbitMQ before the source is acked.

`global.messages` for audio ready to deliver, the ingest dead-letter queue, delay queues for
retries and deferrals, and monitoring events for the delivery workers to batch out.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel

from fila import topology
from fila.models import MonitoringEvent, QueuedAudio, encode
from fila.settings import Settings

DEFER_TIERS_MS = (250, 500, 1000, 2000, 5000, 10000, 30000, 60000)
"""Delays a deferred event can wait; few fixed tiers keep the number of delay queues small."""
RETRY_TIERS_MS = (1000, 5000, 15000, 30000, 60000)
"""Backoff for transient faults, by attempt number (the last one repeats)."""
H_DEFERRALS = "x-fila-deferrals"
H_RECEIVED_AT = "x-fila-received-at"
H_DETAIL = "x-fila-detail"
H_ADMITTED = "x-fila-admitted"
"""On a retried event that already had its token from the bucket."""
_DECLARED_HERE = (topology.GLOBAL_QUEUE, topology.INGEST_DLQ, topology.MONITORING_QUEUE)


def defer_delay_ms(retry_after_ms: int) -> int:
    """The smallest tier at least `retry_after_ms` (the largest when it exceeds them all)."""
    for tier in DEFER_TIERS_MS:
        if retry_after_ms <= tier:
            return tier
    return DEFER_TIERS_MS[-1]


def retry_delay_ms(attempt: int) -> int:
    return RETRY_TIERS_MS[min(max(attempt, 1), len(RETRY_TIERS_MS)) - 1]


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class Publisher:
    """Confirmed publishes on a channel opened with publisher confirms."""

    def __init__(self, channel: AbstractChannel, settings: Settings) -> None:
        self._channel = channel
        self._settings = settings
        self._delays: set[str] = set()

    async def declare(self) -> None:
        await topology.declare_global(self._channel, self._settings)
        await topology.declare_monitoring(self._channel, self._settings)
        await topology.declare_ingest_dlq(self._channel, self._settings)

    async def _publish(self, message: aio_pika.Message, routing_key: str) -> None:
        try:
            await topology.publish_confirmed(self._channel, message, routing_key)
        except topology.Unroutable:
            if routing_key not in _DECLARED_HERE:
                raise
            # Deleted under us (an operator, a broker reset): declare the topology again, once.
            await self.declare()
            await topology.publish_confirmed(self._channel, message, routing_key)

    async def queue_audio(self, item: QueuedAudio, body: bytes) -> None:
        """`body` is `encode(item)`, which the caller keeps as the seen mark too."""
        await self._publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                priority=item.priority,
                message_id=item.id,
            ),
            topology.GLOBAL_QUEUE,
        )

    async def dead_letter(
        self,
        body: bytes,
        *,
        reason: str,
        detail: str,
        attempts: int,
        message_id: str | None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        """The original bytes, untouched, with why they could not be queued."""
        all_headers: dict[str, Any] = dict(headers or {})
        all_headers.update(
            {
                topology.H_REASON: reason,
                topology.H_STAGE: "ingest",
                topology.H_ATTEMPTS: attempts,
                topology.H_FAILED_AT: iso_now(),
                H_DETAIL: detail[:500],
            }
        )
        await self._publish(
            aio_pika.Message(
                body,
                headers=all_headers,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message_id,
            ),
            topology.INGEST_DLQ,
        )

    async def later(
        self, body: bytes, *, delay_ms: int, headers: dict[str, Any], message_id: str | None
    ) -> None:
        """Back onto the ingest queue after `delay_ms`, via a TTL queue."""
        message = aio_pika.Message(
            body,
            headers=headers,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
        )
        await topology.publish_later(
            self._channel,
            self._settings,
            message,
            self._settings.ingest_queue,
            delay_ms,
            self._delays,
        )

    async def monitoring(self, event: MonitoringEvent) -> None:
        await self._publish(
            aio_pika.Message(
                encode(event),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            topology.MONITORING_QUEUE,
        )


def header_int(headers: dict[str, Any] | None, name: str) -> int:
    """An integer header, 0 when absent or unreadable."""
    value = (headers or {}).get(name)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    try:
        return int(value) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def header_float(headers: dict[str, Any] | None, name: str) -> float:
    value = (headers or {}).get(name)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    try:
        result = float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return 0.0
    return result if math.isfinite(result) else 0.0
