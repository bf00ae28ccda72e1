"""Evolution API's HTTP webhook in: the raw body goes onto the ingest queue, confirmed."""

from __future__ import annotations

from typing import Any

import aio_pika
import aiormq
import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from pamqp.commands import Basic

from controlplane.errors import DependencyDown, FieldError
from controlplane.runtime import Runtime


class Accepted(msgspec.Struct, kw_only=True):
    accepted: bool
    id: str


def event_id(raw: bytes) -> str:
    """`<instance>:<messageId>` of an Evolution event, or a 400 naming the missing field."""
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise FieldError("body", "must be a JSON object") from None
    if not isinstance(body, dict):
        raise FieldError("body", "must be a JSON object")
    instance = body.get("instance")
    if not isinstance(instance, str) or not instance:
        raise FieldError("instance", "is required (string)")
    data = body.get("data")
    key = data.get("key") if isinstance(data, dict) else None
    message_id = key.get("id") if isinstance(key, dict) else None
    if not isinstance(message_id, str) or not message_id:
        raise FieldError("data.key.id", "is required (string)")
    return f"{instance}:{message_id}"


async def enqueue(rt: Runtime, raw: bytes, ident: str) -> None:
    """Returns only once the broker has confirmed the persistent message."""
    message = aio_pika.Message(
        raw,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        content_type="application/json",
        message_id=ident,
        headers={"x-fila-source": "http"},
    )
    try:
        confirm = await rt.channel.default_exchange.publish(
            message, routing_key=rt.settings.ingest_queue, mandatory=True, timeout=10
        )
    except (aiormq.exceptions.AMQPError, TimeoutError, ConnectionError) as exc:
        raise DependencyDown("rabbitmq", str(exc) or type(exc).__name__) from None
    if not isinstance(confirm, Basic.Ack):
        raise DependencyDown("rabbitmq", f"ingest queue {rt.settings.ingest_queue!r} refused it")


class IngestController(Controller):
    path = "/webhook/evolution"
    tags = ("ingest",)

    @post("/", status_code=202)
    async def receive(
        self, request: Request[Any, Any, Any], rt: NamedDependency[Runtime]
    ) -> Accepted:
        """202 only after the raw body is durably on the ingest queue."""
        raw = await request.body()
        ident = event_id(raw)
        await enqueue(rt, raw, ident)
        return Accepted(accepted=True, id=ident)

    @post("/{event:str}", status_code=202)
    async def receive_event(
        self, event: FromPath[str], request: Request[Any, Any, Any], rt: NamedDependency[Runtime]
    ) -> Accepted:
        """Evolution API's 'webhook by events' mode appends the event name to the URL."""
        raw = await request.body()
        ident = event_id(raw)
        await enqueue(rt, raw, ident)
        return Accepted(accepted=True, id=ident)
