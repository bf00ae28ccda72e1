"""The monitoring webhook: events from every worker, batched, POSTed in parallel, retried.

Nothing here may block or fail deliveries: publishing is best effort, sending happens on its
own channel and tasks. An event the receiver does not take goes back to RabbitMQ through a delay
queue (`monitoring_retry_schedule`) and, once that is exhausted or the receiver refuses it, to
fila.monitoring.dlq with a reason: a report is never acknowledged unsent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from typing import Any

import aio_pika
import msgspec
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from fila import logging as flog
from fila import topology
from fila.models import MonitoringEvent, MonitoringKind, encode
from fila.recenterrors import RecentErrors
from fila.settings import Settings
from fila.topology import MONITORING_QUEUE, declare_monitoring
from workers import retry
from workers.outcomes import MONITORING, Outcomes, tries_so_far
from workers.webhook import Attempt, Webhooks, event_url

log = flog.get("monitoring")


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


async def publish(channel: AbstractChannel, settings: Settings, item: MonitoringEvent) -> bool:
    """Queue one event for the monitoring webhook; False (logged, never raised) if not queued."""
    try:
        await topology.publish_declaring(
            channel,
            aio_pika.Message(
                encode(item),
                content_type="application/json",
                message_id=uuid.uuid4().hex,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            MONITORING_QUEUE,
            topology.declarer(topology.declare_monitoring, settings),
        )
    except Exception as exc:
        log.warning("monitoring event not queued", monitoring_event=item.event, error=str(exc))
        return False
    return True


class MonitoringSender:
    """Consumes the monitoring queue; flushes at `batch_size` events or every `flush_seconds`."""

    def __init__(
        self,
        settings: Settings,
        channel: AbstractChannel,
        webhooks: Webhooks,
        recent: RecentErrors | None = None,
    ) -> None:
        self.settings = settings
        self.recent = recent
        """Where queue.error reasons are noted for the overview, once per event."""
        self.channel = channel
        self.webhooks = webhooks
        self._batch: list[AbstractIncomingMessage] = []
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._schedule = settings.monitoring_retries
        self._resting: dict[str, tuple[float, Attempt]] = {}
        """Per failing receiver URL: no POST before this monotonic time, and its last failure."""
        self.outcomes = Outcomes(settings, channel, log, MONITORING)

    async def start(self) -> None:
        await self.channel.set_qos(prefetch_count=self.settings.monitoring_batch_size * 2)
        self._queue = await declare_monitoring(self.channel, self.settings)
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
            await self._handle(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Not acked: RabbitMQ keeps it (requeued now, or redelivered if the channel died).
            log.error("monitoring event requeued after an error", error=str(exc))
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        """POST one event; ack it only once delivered, delayed or dead-lettered (confirmed)."""
        attempts = tries_so_far(message.headers) + 1
        try:
            item = msgspec.json.decode(message.body, type=MonitoringEvent)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            failed = Attempt(status=None, response=None)
            await self.outcomes.dead_letter(message, f"invalid body: {exc}", failed, attempts)
            return
        if self.recent is not None and item.event == "queue.error" and attempts == 1:
            try:
                await self.recent.record(item)
            except Exception as exc:
                log.warning("queue.error not noted for the overview", error=str(exc))
        config = await self.webhooks.config()
        url = event_url(config.monitoramento, config.webhookByEvents, item.event)
        if url is None:
            # Nobody to report to: holding events would grow fila.monitoring without bound.
            log.debug(
                "no monitoring webhook configured, event dropped", monitoring_event=item.event
            )
            await message.ack()
            return
        rest = self._resting.get(url)
        resting = rest is not None and rest[0] > time.monotonic()
        if rest is not None and resting:
            # The receiver failed moments ago: wait with it instead of knocking again.
            result = rest[1]
        else:
            message_id = message.message_id or uuid.uuid4().hex
            result = await self.webhooks.post(url, encode(item), message_id, config.headers)
        if result.blocked:
            await self.outcomes.dead_letter(message, f"blocked: {result.blocked}", result, attempts)
            return
        verdict = retry.verdict(result.status)
        if verdict == "delivered":
            self._resting.pop(url, None)
            await message.ack()
        elif verdict == "reject":
            reason = f"rejected: HTTP {result.status}"
            await self.outcomes.dead_letter(message, reason, result, attempts)
        else:
            retry_after = retry.retry_after_seconds(result.retry_after)
            if not resting:
                self._rest(url, result, retry_after)
            await self._later(message, item, result, attempts, retry_after)

    def _rest(self, url: str, failure: Attempt, retry_after: float | None) -> None:
        """Hold POSTs to `url` for the first retry tier (or what it asked) after a failure."""
        seconds = max(self._schedule[0], min(retry_after or 0.0, retry.MAX_RETRY_AFTER))
        if url not in self._resting:
            log.warning(
                "monitoring receiver failing, resting",
                endpoint=url,
                status=failure.status,
                seconds=seconds,
            )
        self._resting[url] = (time.monotonic() + seconds, failure)

    async def _later(
        self,
        message: AbstractIncomingMessage,
        item: MonitoringEvent,
        result: Attempt,
        attempts: int,
        retry_after: float | None,
    ) -> None:
        """Back onto fila.monitoring through a delay queue, or dead-lettered when exhausted."""
        if attempts > len(self._schedule):
            await self.outcomes.dead_letter(message, "retries exhausted", result, attempts)
            return
        delay = retry.rounded_up_ms(
            max(self._schedule[attempts - 1], retry_after or 0.0), self._schedule
        )
        await self.outcomes.later(
            message, attempts, result.status, delay, monitoring_event=item.event
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
