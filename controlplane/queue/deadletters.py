"""Dead-letter routes: browse without consuming, replay back onto the work queue."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import aiormq
import msgspec
from aio_pika.abc import AbstractChannel
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody

from controlplane.errors import DependencyDown, FieldError
from controlplane.runtime import Runtime
from fila import topology
from fila.deadletters import DeadLetter, ReplayResult
from fila.dlq import browse, replay

QueueName = Literal["delivery", "ingest", "monitoring"]
LIMIT_MAX = 10_000
"""Most letters one browse returns."""


class DeadLetters(msgspec.Struct, kw_only=True):
    deadLetters: list[DeadLetter]
    count: int


class ReplayBody(msgspec.Struct, kw_only=True):
    queue: QueueName = "delivery"
    instance: str | None = None
    reason: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1)] | None = None


def _names(rt: Runtime, queue: str) -> tuple[str, str]:
    """(dead-letter queue, queue its messages go back to)."""
    if queue == "delivery":
        return topology.GLOBAL_DLQ, topology.GLOBAL_QUEUE
    if queue == "ingest":
        return topology.INGEST_DLQ, rt.settings.ingest_queue
    if queue == "monitoring":
        return topology.MONITORING_DLQ, topology.MONITORING_QUEUE
    raise FieldError("queue", "must be delivery, ingest or monitoring")


@contextlib.asynccontextmanager
async def plain_channel(rt: Runtime) -> AsyncIterator[AbstractChannel]:
    """A short-lived non-robust channel: a robust one caches queue declarations, and the
    counts `fila.deadletters` reads from a passive declare would be stale."""
    try:
        connection = await topology.connect_once(rt.settings, timeout=10)
    except (OSError, aiormq.exceptions.AMQPError) as exc:
        raise DependencyDown("rabbitmq", str(exc)) from None
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


class DeadLetterController(Controller):
    path = "/queue/dead-letters"
    tags = ("queue",)

    @get("/")
    async def browse(
        self,
        rt: NamedDependency[Runtime],
        queue: FromQuery[QueueName] = "delivery",
        instance: FromQuery[str | None] = None,
        reason: FromQuery[str | None] = None,
        limit: FromQuery[int] = 100,
    ) -> DeadLetters:
        """Messages stay where they are (non-destructive)."""
        dlq, _ = _names(rt, queue)
        if not 1 <= limit <= LIMIT_MAX:
            raise FieldError("limit", f"must be between 1 and {LIMIT_MAX}")
        async with plain_channel(rt) as channel:
            letters = await browse(channel, dlq, instance=instance, reason=reason, limit=limit)
        return DeadLetters(deadLetters=letters, count=len(letters))

    @post("/replay", status_code=200)
    async def replay(
        self, rt: NamedDependency[Runtime], data: JSONBody[ReplayBody]
    ) -> ReplayResult:
        """Back onto the work queue with the original message id and priority."""
        dlq, target = _names(rt, data.queue)
        if data.limit is not None and data.limit < 1:
            raise FieldError("limit", "must be ≥ 1")
        async with plain_channel(rt) as channel:
            return await replay(
                channel,
                dlq,
                instance=data.instance,
                reason=data.reason,
                limit=data.limit,
                target=target,
            )
