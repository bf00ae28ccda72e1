"""RabbitMQ names and the declarations every process agrees on."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractQueue,
    AbstractRobustConnection,
    TimeoutType,
)
from aiormq.abc import AbstractConnection as UnderlayConnection
from aiormq.exceptions import ChannelNotFoundEntity, ChannelPreconditionFailed
from pamqp.commands import Basic
from yarl import URL

from fila.settings import Settings, env_name

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
"""global.messages as a classic queue (FILA_RABBITMQ_QUEUE_TYPE=classic, the default)."""

QUORUM_DELIVERY_LIMIT = 50
"""Deliveries of one event on fila.ingest before RabbitMQ dead-letters it to fila.ingest.dlq
(reason `delivery_limit`): an event that kills every worker that takes it. global.messages has
no such limit: a receiver hold requeues its notes often, and its 1 h TTL bounds them already."""
_QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}
_AT_LEAST_ONCE: dict[str, Any] = {
    **_QUORUM,
    # RabbitMQ keeps a dead letter until its target queue confirmed it (needs reject-publish).
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}


def quorum(settings: Settings) -> bool:
    return settings.rabbitmq_queue_type == "quorum"


def global_args(settings: Settings) -> dict[str, Any]:
    """Quorum queues have no priority before RabbitMQ 4.0: FIFO, the same TTL and dead letters."""
    if not quorum(settings):
        return GLOBAL_QUEUE_ARGS
    return {**_AT_LEAST_ONCE, "x-message-ttl": GLOBAL_TTL_MS, "x-dead-letter-exchange": GLOBAL_DLX}


def ingest_args(settings: Settings) -> dict[str, Any]:
    if not quorum(settings):
        return {}
    return {
        **_AT_LEAST_ONCE,
        "x-delivery-limit": QUORUM_DELIVERY_LIMIT,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": INGEST_DLQ,
    }


def plain_args(settings: Settings) -> dict[str, Any]:
    """Dead-letter, watch and monitoring queues: nothing but the type."""
    return dict(_QUORUM) if quorum(settings) else {}


def delay_args(settings: Settings, target: str, delay_ms: int) -> dict[str, Any]:
    args: dict[str, Any] = {
        "x-message-ttl": delay_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": target,
    }
    return {**_AT_LEAST_ONCE, **args} if quorum(settings) else args


class QueueMismatch(Exception):
    """A queue exists with other arguments than this deployment declares (one-line message)."""

    def __init__(self, queue: str, message: str) -> None:
        super().__init__(message)
        self.queue = queue


async def declare_queue(
    channel: AbstractChannel, settings: Settings, name: str, arguments: dict[str, Any]
) -> AbstractQueue:
    """A durable queue; one that exists with other arguments raises `QueueMismatch`."""
    try:
        return await channel.declare_queue(name, durable=True, arguments=arguments or None)
    except ChannelPreconditionFailed as exc:
        raise QueueMismatch(name, mismatch_message(settings, name, str(exc))) from None


def mismatch_message(settings: Settings, name: str, detail: str, actual: str | None = None) -> str:
    """What an operator reads when FILA_RABBITMQ_QUEUE_TYPE disagrees with an existing queue."""
    var = env_name("rabbitmq_queue_type")
    wanted = settings.rabbitmq_queue_type
    if actual is not None and actual != wanted:
        return (
            f"queue {name!r} is a {actual} queue but {var}={wanted}: set {var}={actual}, or "
            f"drain and delete Fila's {actual} queues first (README: changing the queue type)"
        )
    why = detail.split("PRECONDITION_FAILED - ", 1)[-1].strip("\"' ")
    return f"queue {name!r} exists with other arguments than {var}={wanted} declares: {why}"


class ClusterConnection(aio_pika.RobustConnection):
    """A robust connection that tries the next node of the cluster at each reconnection.

    aio-pika reconnects to one URL only; it clears `transport` before every attempt, which is
    where the next URL is taken (round robin over `urls`).
    """

    def __init__(self, urls: list[str], **kwargs: Any) -> None:
        self._urls = [URL(u) for u in urls]
        self._next = 0
        self._rotating = False
        self._transport: UnderlayConnection | None = None
        super().__init__(self._urls[0], **kwargs)
        self._rotating = True

    @property
    def transport(self) -> Any:
        return self._transport

    @transport.setter
    def transport(self, value: Any) -> None:
        if value is None and self._rotating:
            self.url = self._urls[self._next % len(self._urls)]
            self._next += 1
        self._transport = value


async def connect(settings: Settings, timeout: TimeoutType = None) -> AbstractRobustConnection:
    """A connection that reconnects by itself (to another node of a cluster, when given) and
    re-declares what was declared on it. The first connection tries each node in turn."""
    urls = settings.rabbitmq_urls
    if len(urls) == 1:
        return await aio_pika.connect_robust(urls[0], client_properties={"app": "fila"})
    error: BaseException | None = None
    for start in range(len(urls)):
        connection = ClusterConnection(
            urls[start:] + urls[:start], client_properties={"app": "fila"}
        )
        try:
            await connection.connect(timeout=timeout)
            return connection
        except Exception as exc:
            error = exc
            await connection.close()
    assert error is not None
    raise error


async def connect_once(settings: Settings, timeout: TimeoutType = None) -> AbstractConnection:
    """A plain connection (probes, one-off commands) to the first node of the list that answers."""
    error: BaseException | None = None
    for url in settings.rabbitmq_urls:
        try:
            return await aio_pika.connect(url, timeout=timeout)
        except Exception as exc:
            error = exc
    assert error is not None
    raise error


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


async def declare_global(channel: AbstractChannel, settings: Settings) -> AbstractQueue:
    """`global.messages` (priority when classic, 1 h TTL) and its dead letters."""
    dlx = await channel.declare_exchange(GLOBAL_DLX, aio_pika.ExchangeType.FANOUT, durable=True)
    dlq = await declare_queue(channel, settings, GLOBAL_DLQ, plain_args(settings))
    await dlq.bind(dlx)
    return await declare_queue(channel, settings, GLOBAL_QUEUE, global_args(settings))


async def declare_expiry_watch(channel: AbstractChannel, settings: Settings) -> AbstractQueue:
    """A queue on the dead-letter exchange: only broker dead-lettering (expiry) lands there.

    Fila's own dead letters go straight to the DLQ, so this sees exactly what nobody reported.
    """
    await declare_global(channel, settings)
    dlx = await channel.get_exchange(GLOBAL_DLX, ensure=False)
    queue = await declare_queue(channel, settings, GLOBAL_EXPIRED, plain_args(settings))
    await queue.bind(dlx)
    return queue


async def declare_ingest_dlq(channel: AbstractChannel, settings: Settings) -> AbstractQueue:
    return await declare_queue(channel, settings, INGEST_DLQ, plain_args(settings))


async def declare_ingest(channel: AbstractChannel, settings: Settings) -> AbstractQueue:
    """Fila's own durable queue bound to Evolution API's topic exchange, or an existing one."""
    await declare_ingest_dlq(channel, settings)
    if settings.ingest_queue_existing:
        return await channel.get_queue(settings.ingest_queue, ensure=True)
    exchange = await channel.declare_exchange(
        settings.evolution_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await declare_queue(channel, settings, settings.ingest_queue, ingest_args(settings))
    await queue.bind(exchange, routing_key=settings.evolution_routing_key)
    return queue


async def declare_monitoring(channel: AbstractChannel, settings: Settings) -> AbstractQueue:
    """`fila.monitoring` (no TTL: a report waits for its receiver) and its dead letters."""
    await declare_queue(channel, settings, MONITORING_DLQ, plain_args(settings))
    return await declare_queue(channel, settings, MONITORING_QUEUE, plain_args(settings))


def declarer(
    declare: Callable[[AbstractChannel, Settings], Awaitable[AbstractQueue]], settings: Settings
) -> Callable[[AbstractChannel], Awaitable[AbstractQueue]]:
    """`declare` bound to `settings`, for `publish_declaring`."""
    return lambda channel: declare(channel, settings)


def delay_queue_name(target: str, delay_ms: int, settings: Settings | None = None) -> str:
    """Quorum delay queues have a name of their own: after a switch of type, a classic one
    left behind drains into its target instead of refusing the new declaration."""
    kind = "qdelay" if settings is not None and quorum(settings) else "delay"
    return f"{target}.{kind}.{delay_ms}"


async def declare_delay(
    channel: AbstractChannel, settings: Settings, target: str, delay_ms: int
) -> str:
    """A queue that holds messages `delay_ms` then dead-letters them back onto `target`.

    One queue per delay keeps every message in a queue expiring in order (no head-of-line wait).
    """
    name = delay_queue_name(target, delay_ms, settings)
    await declare_queue(channel, settings, name, delay_args(settings, target, delay_ms))
    return name


async def publish_later(
    channel: AbstractChannel,
    settings: Settings,
    message: aio_pika.Message,
    target: str,
    delay_ms: int,
    declared: set[str],
) -> None:
    """`message` back onto `target` after `delay_ms`, confirmed as routed.

    `declared` remembers the delay queues this channel already declared; one deleted since
    (an operator, a broker reset) is declared again, once.
    """
    name = delay_queue_name(target, delay_ms, settings)
    if name not in declared:
        await declare_delay(channel, settings, target, delay_ms)
        declared.add(name)
    try:
        await publish_confirmed(channel, message, name)
    except Unroutable:
        await declare_delay(channel, settings, target, delay_ms)
        await publish_confirmed(channel, message, name)


async def declare_all(channel: AbstractChannel, settings: Settings) -> None:
    await declare_ingest(channel, settings)
    await declare_global(channel, settings)
    await declare_monitoring(channel, settings)


def fixed_queues(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """Every queue Fila declares under a fixed name, with its arguments (delay queues aside)."""
    plain = plain_args(settings)
    queues = [
        (GLOBAL_QUEUE, global_args(settings)),
        (GLOBAL_DLQ, plain),
        (GLOBAL_EXPIRED, plain),
        (INGEST_DLQ, plain),
        (MONITORING_QUEUE, plain),
        (MONITORING_DLQ, plain),
    ]
    if not settings.ingest_queue_existing:
        queues.insert(0, (settings.ingest_queue, ingest_args(settings)))
    return queues


async def check_queue_types(connection: AbstractConnection, settings: Settings) -> None:
    """Each of Fila's queues that exists is declared again as this deployment declares it (a
    no-op when equivalent; nothing is created). One of the other type raises `QueueMismatch`
    naming it, so a switch of FILA_RABBITMQ_QUEUE_TYPE stops a start in one line."""
    other = settings.replace(rabbitmq_queue_type="classic" if quorum(settings) else "quorum")
    for name, arguments in fixed_queues(settings):
        if not await _exists(connection, name):
            continue
        try:
            async with _channel(connection) as channel:
                await declare_queue(channel, settings, name, arguments)
        except QueueMismatch as exc:
            theirs = dict(fixed_queues(other)).get(name, {})
            try:
                async with _channel(connection) as channel:
                    await declare_queue(channel, other, name, theirs)
            except QueueMismatch:
                raise exc from None
            actual = other.rabbitmq_queue_type
            raise QueueMismatch(name, mismatch_message(settings, name, "", actual)) from None


@contextlib.asynccontextmanager
async def _channel(connection: AbstractConnection) -> AsyncIterator[AbstractChannel]:
    """A throwaway channel (the broker closes it on a refused declaration)."""
    channel = await connection.channel()
    try:
        yield channel
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


async def _exists(connection: AbstractConnection, name: str) -> bool:
    try:
        async with _channel(connection) as channel:
            await channel.declare_queue(name, passive=True)
    except ChannelNotFoundEntity:
        return False
    return True


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
