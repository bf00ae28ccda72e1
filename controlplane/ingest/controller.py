"""Evolution API's HTTP webhook in: the raw body goes onto the ingest queue, confirmed."""

from __future__ import annotations

import functools
from typing import Any

import aio_pika
import aiormq
import msgspec
from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency

from controlplane.errors import DependencyDown, FieldError, field_of
from controlplane.ingest.tokens import INGEST_OPT, require_ingest
from controlplane.runtime import Runtime
from fila import topology
from fila.events import EventError, audio_of, parse_event
from fila.models import instance_problem
from fila.offload import off_loop


class Accepted(msgspec.Struct, kw_only=True, omit_defaults=True):
    accepted: bool
    id: str | None = None
    reason: str | None = None
    """Why an event was not queued (an event Fila does not consume)."""


def _normal(event: str) -> str:
    """`MESSAGES_UPSERT`, `messages-upsert` and `messages.upsert` name the same event."""
    return event.strip().lower().replace("_", ".").replace("-", ".")


def _class(chars: str) -> str:
    """A regex character class both Python and ECMA-262 read alike (BMP escapes)."""
    out = (
        c if (c.isascii() and c.isalnum()) or ord(c) > 0xFFFF else f"\\u{ord(c):04x}" for c in chars
    )
    return "[" + "".join(out) + "]"


@functools.cache
def consumed_pattern(routing_key: str) -> str:
    """The event names `_normal` maps to the routing key, as the OpenAPI document's regex:
    what `str.strip` removes around each character's one-character lower-case spellings."""
    wanted = _normal(routing_key)
    every = "".join(map(chr, range(0x110000)))
    space = "".join(c for c in every if c.isspace())
    forms = dict.fromkeys(wanted, "")
    for c in every:
        low = "." if c in "_-" else c.lower()
        if low in forms:
            forms[low] += c
    body = "".join(_class(forms[ch]) for ch in wanted)
    return f"^{_class(space)}*{body}{_class(space)}*$"


def parse(raw: bytes) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise FieldError("body", "must be a JSON object") from None
    if not isinstance(body, dict):
        raise FieldError("body", "must be a JSON object")
    return body


def event_id(body: dict[str, Any]) -> str:
    """`<instance>:<messageId>` of an Evolution event, or a 400 naming the missing field."""
    instance = body.get("instance")
    if not isinstance(instance, str) or not instance:
        raise FieldError("instance", "is required (string)")
    problem = instance_problem(instance)
    if problem:
        raise FieldError("instance", problem)
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
        await topology.publish_confirmed(rt.channel, message, rt.settings.ingest_queue, timeout=10)
    except topology.Unroutable:
        raise DependencyDown(
            "rabbitmq", f"ingest queue {rt.settings.ingest_queue!r} refused it"
        ) from None
    except (aiormq.exceptions.AMQPError, TimeoutError, ConnectionError) as exc:
        raise DependencyDown("rabbitmq", str(exc) or type(exc).__name__) from None


class IngestController(Controller):
    path = "/webhook/evolution"
    tags = ("ingest",)
    guards = (require_ingest,)
    opt = INGEST_OPT

    @post("/", status_code=202)
    async def receive(
        self, request: Request[Any, Any, Any], rt: NamedDependency[Runtime]
    ) -> Response[Accepted]:
        """202 only after the raw body is durably on the ingest queue."""
        async with rt.ingest_budget.hold(_size(request)):
            return await accept(rt, await request.body())

    @post("/{event:str}", status_code=202)
    async def receive_event(
        self, request: Request[Any, Any, Any], rt: NamedDependency[Runtime]
    ) -> Response[Accepted]:
        """Evolution API's 'webhook by events' mode appends the event name to the URL; the
        body's `event` still decides (the document cannot tie a body to its path)."""
        async with rt.ingest_budget.hold(_size(request)):
            return await accept(rt, await request.body())

    @post("/t/{token:str}", status_code=202)
    async def receive_with_token(
        self, request: Request[Any, Any, Any], rt: NamedDependency[Runtime]
    ) -> Response[Accepted]:
        """WEBHOOK_GLOBAL_URL form: Evolution's global webhook sends no headers, so the token
        rides in the path (checked by the guard before the body is read)."""
        async with rt.ingest_budget.hold(_size(request)):
            return await accept(rt, await request.body())

    @post("/t/{token:str}/{event:str}", status_code=202)
    async def receive_event_with_token(
        self, request: Request[Any, Any, Any], rt: NamedDependency[Runtime]
    ) -> Response[Accepted]:
        """The token URL with 'webhook by events' on (`…/t/<token>/messages-upsert`)."""
        async with rt.ingest_budget.hold(_size(request)):
            return await accept(rt, await request.body())


def _size(request: Request[Any, Any, Any]) -> int:
    """The declared length; a chunked body counts as the largest one allowed."""
    length = request.headers.get("content-length", "")
    if length.isdigit():
        return int(length)
    return request.route_handler.resolve_request_max_body_size() or 0


async def accept(rt: Runtime, raw: bytes) -> Response[Accepted]:
    """Events other than the one the ingest queue is bound to are answered 200, not queued,
    as the RabbitMQ binding would skip them (Evolution API posts every enabled event). The
    body's `event` decides (Evolution always sends it), so the document can say which."""
    body = await off_loop(len(raw), parse, raw)
    named = body.get("event")
    wanted = _normal(rt.settings.evolution_routing_key)
    if isinstance(named, str) and _normal(named) != wanted:
        reason = f"event {named!r} is not consumed (only {rt.settings.evolution_routing_key})"
        return Response(Accepted(accepted=False, reason=reason), status_code=200)
    ident = event_id(body)
    try:  # what the ingest worker would dead-letter is refused here, naming the field
        audio_of(await off_loop(len(raw), parse_event, raw))
    except EventError as exc:
        field, rule = field_of(exc.detail)
        raise FieldError(field, rule) from None
    await enqueue(rt, raw, ident)
    return Response(Accepted(accepted=True, id=ident), status_code=202)
