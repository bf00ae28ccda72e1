"""RabbitMQ names and the declarations every process agrees on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection
from pamqp.commands import Basic

from fila.settings import Settings

GLOBAL_QUEUE = "global.messages"
GLOBAL_DLX = "global.messages.dlx"
GLOBAL_DLQ = "global.messages.dlq"
GLOBAL_EXPIRED = "global.messages.expired"
"""Copies of what RabbitMQ itself dead-letters from global.messages (TTL), to be reported."""
INGEST_DLQ = "fila.ingest.dlq"
MONITORING_QUEUE = "fila.monitoring"
MONITORING_DLQ = "fila.monitoring.dlq"
"""Monitoring events the receiver refused or never took within the retry schedule."""
MAX_PRIORITY = 10
GLOBAL_TTL_MS = 3_600_000

# Headers Fila sets on dead letters and retried messages.
H_REASON = "x-fila-reason"
H_STAGE = "x-fila-stage"
H_ATTEMPTS = "x-fila-attempts"
H_STATUS = "x-fila-status-code"
H_RESPONSE = "x-fila-response"
H_FAILED_AT = "x-fila-failed-at"

GLOBAL_QUEUE_ARGS: dict[str, Any] = {
    "x-max-priority": MAX_PRIORITY,
    "x-message-ttl": GLOBAL_TTL_MS,
    "x-dead-letter-exchange": GLOBAL_DLX,
}


async def connect(settings: Settings) -> AbstractRobustConnection:
    """A connection that reconnects by itself and re-declares what was declared on it."""
    return await aio_pika.connect_robust(settings.rabbitmq_url, client_properties={"app": "fila"})


class Unroutable(Exception):
    """RabbitMQ took a publish but no queue received it (the queue is missing)."""


async def publish_confirmed(
    channel: AbstractChannel,
    message: aio_pika.Message,
    routing_key: str,
    timeout: float | None = None,
) -> None:
    """Publish to a queue by name; returns only once RabbitMQ has it in that queue.

    The channel must have publisher confirms. A message no queue takes comes back as a
    return, not an error, so it is raised here: the caller must not ack its source.
    """
    confirm = await channel.default_exchange.publish(
        message, routing_key=routing_key, mandatory=True, timeout=timeout
    )
    if not isinstance(confirm, Basic.Ack):
        raise Unroutable(f"queue {routing_key!r} does not exist: message not taken")


async def publish_declaring(
    channel: AbstractChannel,
    message: aio_pika.Message,
    routing_key: str,
    declare: Callable[[AbstractChannel], Awaitable[object]],
) -> None:
    """`publish_confirmed`, declaring the queue again once if it was deleted under us."""
    try:
        await publish_confirmed(channel, message, routing_key)
    except Unroutable:
        await declare(channel)
        await publish_confirmed(channel, message, routing_key)


async def declare_global(channel: AbstractChannel) -> AbstractQueue:
    """`global.messages` (priority, 1 h TTL) and its dead letters."""
    dlx = await channel.declare_exchange(GLOBAL_DLX, aio_pika.ExchangeType.FANOUT, durable=True)
    dlq = await channel.declare_queue(GLOBAL_DLQ, durable=True)
    await dlq.bind(dlx)
    return await channel.declare_queue(GLOBAL_QUEUE, durable=True, arguments=GLOBAL_QUEUE_ARGS)


async def declare_expiry_watch(channel: AbstractChannel) -> AbstractQueue:
    """A queue on the dead-letter exchange: only broker dead-lettering (expiry) lands there.

    Fila's own dead letters go straight to the DLQ, so this sees exactly what nobody reported.
    """
    await declare_global(channel)
    dlx = await channel.get_exchange(GLOBAL_DLX, ensure=False)
    queue = await channel.declare_queue(GLOBAL_EXPIRED, durable=True)
    await queue.bind(dlx)
    return queue


async def declare_ingest(channel: AbstractChannel, settings: Settings) -> AbstractQueue:
    """Fila's own durable queue bound to Evolution API's topic exchange, or an existing one."""
    await channel.declare_queue(INGEST_DLQ, durable=True)
    if settings.ingest_queue_existing:
        return await channel.get_queue(settings.ingest_queue, ensure=True)
    exchange = await channel.declare_exchange(
        settings.evolution_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(settings.ingest_queue, durable=True)
    await queue.bind(exchange, routing_key=settings.evolution_routing_key)
    return queue


async def declare_monitoring(channel: AbstractChannel) -> AbstractQueue:
    """`fila.monitoring` (no TTL: a report waits for its receiver) and its dead letters."""
    await channel.declare_queue(MONITORING_DLQ, durable=True)
    return await channel.declare_queue(MONITORING_QUEUE, durable=True)


def delay_queue_name(target: str, delay_ms: int) -> str:
    return f"{target}.delay.{delay_ms}"


async def declare_delay(channel: AbstractChannel, target: str, delay_ms: int) -> str:
    """A queue that holds messages `delay_ms` then dead-letters them back onto `target`.

    One queue per delay keeps every message in a queue expiring in order (no head-of-line wait).
    """
    name = delay_queue_name(target, delay_ms)
    await channel.declare_queue(
        name,
        durable=True,
        arguments={
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": target,
        },
    )
    return name


async def publish_later(
    channel: AbstractChannel,
    message: aio_pika.Message,
    target: str,
    delay_ms: int,
    declared: set[str],
) -> None:
    """`message` back onto `target` after `delay_ms`, confirmed as routed.

    `declared` remembers the delay queues this channel already declared; one deleted since
    (an operator, a broker reset) is declared again, once.
    """
    name = delay_queue_name(target, delay_ms)
    if name not in declared:
        await declare_delay(channel, target, delay_ms)
        declared.add(name)
    try:
        await publish_confirmed(channel, message, name)
    except Unroutable:
        await declare_delay(channel, target, delay_ms)
        await publish_confirmed(channel, message, name)


async def declare_all(channel: AbstractChannel, settings: Settings) -> None:
    await declare_ingest(channel, settings)
    await declare_global(channel)
    await declare_monitoring(channel)


async def queue_depth(channel: AbstractChannel, name: str) -> int:
    """Ready messages in a queue (passive declare: never creates it)."""
    return (await queue_counts(channel, name))[0]


async def queue_counts(channel: AbstractChannel, name: str) -> tuple[int, int]:
    """Ready messages and consumers of a queue, asked of the broker now.

    A robust channel answers a passive `declare_queue` from its cache (counts of the first
    declaration), so this goes through the underlying channel.
    """
    underlay = await channel.get_underlay_channel()
    result = await underlay.queue_declare(name, passive=True)
    return int(result.message_count or 0), int(result.consumer_count or 0)
