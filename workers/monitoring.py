"""The monitoring webhook: events from every worker, batched, POSTed in parallel, retried.

Nothing here may block or fail deliveries: publishing is best effort, sending happens on its
own channel and tasks, and an event that cannot be sent is acknowledged after a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from typing import Any

import aio_pika
import msgspec
import stamina
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from fila import logging as flog
from fila.models import MonitoringEvent, MonitoringKind, encode
from fila.settings import Settings
from fila.topology import MONITORING_QUEUE, declare_monitoring
from workers.webhook import Webhooks, event_url

log = flog.get("monitoring")


class MonitoringRetry(Exception):
    """The monitoring receiver answered something worth another try."""


def event(
    settings: Settings, kind: MonitoringKind, data: dict[str, Any], instance: str | None = None
) -> MonitoringEvent:
    return MonitoringEvent(
        event=kind,
        timestamp=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        data=data,
        server_url=settings.server_url,
        instance=instance,
    )


async def publish(channel: AbstractChannel, item: MonitoringEvent) -> None:
    """Queue one event for the monitoring webhook; failures are logged, never raised."""
    try:
        await channel.default_exchange.publish(
            aio_pika.Message(
                encode(item),
                content_type="application/json",
                message_id=uuid.uuid4().hex,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=MONITORING_QUEUE,
        )
    except Exception as exc:
        log.warning("monitoring event not queued", monitoring_event=item.event, error=str(exc))


class MonitoringSender:
    """Consumes the monitoring queue; flushes at `batch_size` events or every `flush_seconds`."""

    def __init__(self, settings: Settings, channel: AbstractChannel, webhooks: Webhooks) -> None:
        self.settings = settings
        self.channel = channel
        self.webhooks = webhooks
        self._batch: list[AbstractIncomingMessage] = []
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.channel.set_qos(prefetch_count=self.settings.monitoring_batch_size * 2)
        self._queue = await declare_monitoring(self.channel)
        self._tag = await self._queue.consume(self._on_message)
        self._timer = asyncio.create_task(self._tick(), name="monitoring-flush")

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._batch.append(message)
        if len(self._batch) >= self.settings.monitoring_batch_size:
            self._flush()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.settings.monitoring_flush_seconds)
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        task = asyncio.create_task(self._send_batch(batch), name="monitoring-batch")
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _send_batch(self, batch: list[AbstractIncomingMessage]) -> None:
        await asyncio.gather(*(self._send_one(m) for m in batch), return_exceptions=True)

    async def _send_one(self, message: AbstractIncomingMessage) -> None:
        try:
            item = msgspec.json.decode(message.body, type=MonitoringEvent)
        except msgspec.DecodeError as exc:
            log.warning("bad monitoring event dropped", error=str(exc))
            await message.ack()
            return
        try:
            await self._post(item, message.message_id or uuid.uuid4().hex)
        except Exception as exc:
            log.warning("monitoring event given up", monitoring_event=item.event, error=str(exc))
        await message.ack()

    async def _post(self, item: MonitoringEvent, message_id: str) -> None:
        config = await self.webhooks.config()
        url = event_url(config.monitoramento, config.webhookByEvents, item.event)
        if url is None:
            log.debug(
                "no monitoring webhook configured, event dropped", monitoring_event=item.event
            )
            return
        body = encode(item)
        async for attempt in stamina.retry_context(
            on=MonitoringRetry, attempts=4, timeout=30.0, wait_initial=0.2, wait_max=5.0
        ):
            with attempt:
                result = await self.webhooks.post(url, body, message_id, config.headers)
                if result.blocked:
                    log.warning(
                        "monitoring webhook blocked",
                        monitoring_event=item.event,
                        reason=result.blocked,
                    )
                    return
                if result.status is None or result.status == 429 or result.status >= 500:
                    raise MonitoringRetry(f"{url}: {result.status} {result.response}")
                if result.status >= 300:
                    log.warning(
                        "monitoring webhook refused event",
                        monitoring_event=item.event,
                        status=result.status,
                    )

    async def stop(self, grace: float) -> None:
        """Stop taking events, send what is batched within `grace`; the rest is requeued."""
        if self._timer:
            self._timer.cancel()
        if self._queue and self._tag:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._tag)
        self._flush()
        if self._flushes:
            _, pending = await asyncio.wait(set(self._flushes), timeout=grace)
            for task in pending:
                task.cancel()
