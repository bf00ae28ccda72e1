"""A stand-in for the Evolution API routes Fila calls (reactions, text, media download, the
instance list) plus a WhatsApp-style media CDN, recording every call so tests and demos can see
what Fila did; `publish_per_instance` publishes as Evolution's per-instance RabbitMQ mode does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import secrets
import time
import uuid
from collections import Counter, OrderedDict
from typing import Any, Literal
from urllib.parse import parse_qs

import aio_pika
import msgspec
from aio_pika.abc import AbstractChannel

from simulator.httpserver import Request, Response, json_response
from simulator.served import Served

Route = Literal["sendReaction", "sendText", "getBase64", "media", "fetchInstances"]
ROUTES: tuple[Route, ...] = ("sendReaction", "sendText", "getBase64", "media", "fetchInstances")

_PATHS: list[tuple[re.Pattern[str], str, Route]] = [
    (re.compile(r"^/message/sendReaction/(?P<instance>[^/]+)$"), "POST", "sendReaction"),
    (re.compile(r"^/message/sendText/(?P<instance>[^/]+)$"), "POST", "sendText"),
    (re.compile(r"^/chat/getBase64FromMediaMessage/(?P<instance>[^/]+)$"), "POST", "getBase64"),
    (re.compile(r"^/media/(?P<name>[^/]+)$"), "GET", "media"),
    (re.compile(r"^/instance/fetchInstances$"), "GET", "fetchInstances"),
]
STATS_PATH = "/_stub/stats"


class EvolutionCall(msgspec.Struct, kw_only=True):
    route: Route
    instance: str | None
    json: Any
    at: float
    status: int = 200


class _Media(msgspec.Struct):
    data: bytes
    mimetype: str


class EvolutionStub(Served):
    """`async with EvolutionStub(api_key) as stub:` a real HTTP server on 127.0.0.1."""

    def __init__(self, api_key: str, port: int = 0, keep: int = 5000) -> None:
        self.api_key = api_key
        super().__init__(self._handle, port)
        self.calls: list[EvolutionCall] = []
        self.keep = max(1, keep)
        """Media and blobs kept, newest first: a long demo must not grow without bound."""
        self._media: OrderedDict[str, _Media] = OrderedDict()
        self._blobs: OrderedDict[str, bytes] = OrderedDict()
        self._failures: dict[str, list[int]] = {}
        self._latency: dict[str, float] = {}
        self._called = asyncio.Event()
        self._instances: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ instances

    def add_instance(self, name: str) -> None:
        """An instance fetchInstances lists from now on (as after POST /instance/create)."""
        self._instances[name] = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
            "name": name,
            "connectionStatus": "open",
            "ownerJid": f"55119{abs(hash(name)) % 10**8:08d}@s.whatsapp.net",
            "profileName": name,
            "integration": "WHATSAPP-BAILEYS",
            "token": secrets.token_hex(16),
            "clientName": "evolution_exchange",
            "createdAt": "2026-11-25T09:00:00.000Z",
            "Rabbitmq": {"enabled": True, "events": ["MESSAGES_UPSERT"]},
        }

    def remove_instance(self, name: str) -> None:
        """DELETE /instance/delete: gone from the list (its exchange stays, as in RabbitMQ)."""
        self._instances.pop(name, None)

    # ------------------------------------------------------------------ setup

    def add_media(self, message_id: str, data: bytes, mimetype: str = "audio/ogg") -> None:
        """What getBase64FromMediaMessage answers for this message id."""
        self._media[message_id] = _Media(data, mimetype)
        while len(self._media) > self.keep:
            self._media.popitem(last=False)

    def add_blob(self, name: str, data: bytes) -> str:
        """Serve `data` at `/media/{name}` (no apikey, like a CDN); returns its URL."""
        self._blobs[name] = data
        while len(self._blobs) > self.keep:
            self._blobs.popitem(last=False)
        return f"{self.url}/media/{name}"

    def fail_next(self, route: str, n: int, status: int = 500) -> None:
        if route not in ROUTES:
            raise ValueError(f"route must be one of {', '.join(ROUTES)}")
        self._failures.setdefault(route, []).extend([status] * n)

    def recover(self, route: str) -> None:
        """Drop the failures still queued for `route`: an outage ends now."""
        self._failures.pop(route, None)

    def set_latency(self, route: str, seconds: float) -> None:
        if route not in ROUTES:
            raise ValueError(f"route must be one of {', '.join(ROUTES)}")
        self._latency[route] = max(0.0, seconds)

    # ------------------------------------------------------------------ queries

    def calls_to(self, route: str, instance: str | None = None) -> list[EvolutionCall]:
        return [
            c
            for c in self.calls
            if c.route == route and (instance is None or c.instance == instance)
        ]

    async def wait_for_calls(self, route: str, n: int, timeout: float = 30) -> list[EvolutionCall]:
        """Wait until `route` was called at least `n` times; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while len(self.calls_to(route)) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                got = len(self.calls_to(route))
                raise TimeoutError(f"{got} {route} calls after {timeout}s, wanted {n}")
            self._called.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._called.wait(), min(left, 0.5))
        return self.calls_to(route)

    def stats(self) -> dict[str, Any]:
        return {
            "total": len(self.calls),
            "byRoute": dict(Counter(c.route for c in self.calls)),
            "failed": sum(1 for c in self.calls if c.status >= 400),
            "media": len(self._media),
            "blobs": len(self._blobs),
        }

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: Request) -> Response:
        if request.method == "GET" and request.path == STATS_PATH:
            return json_response(self.stats())
        for pattern, method, route in _PATHS:
            match = pattern.match(request.path)
            if match and request.method == method:
                return await self._route(route, match.groupdict(), request)
        return json_response({"status": 404, "error": "Not Found", "path": request.path}, 404)

    async def _route(self, route: Route, params: dict[str, str], request: Request) -> Response:
        body = request.json()
        call = EvolutionCall(
            route=route, instance=params.get("instance"), json=body, at=time.time()
        )
        self.calls.append(call)
        self._called.set()
        delay = self._latency.get(route, 0.0)
        if delay:
            await asyncio.sleep(delay)
        response = self._answer(route, params, request, body)
        call.status = response.status
        return response

    def _answer(
        self, route: Route, params: dict[str, str], request: Request, body: Any
    ) -> Response:
        if route != "media" and request.headers.get("apikey") != self.api_key:
            return json_response({"status": 401, "error": "Unauthorized", "field": "apikey"}, 401)
        pending = self._failures.get(route)
        if pending:
            status = pending.pop(0)
            return json_response({"status": status, "error": "injected failure"}, status)
        if route == "media":
            blob = self._blobs.get(params["name"])
            if blob is None:
                return json_response({"status": 404, "error": "no such media"}, 404)
            return Response(body=blob, content_type="application/octet-stream")
        if route == "fetchInstances":
            return self._fetch_instances(request)
        if not isinstance(body, dict):
            return json_response({"status": 400, "error": "body must be a JSON object"}, 400)
        if route == "getBase64":
            return self._base64(body)
        if route == "sendReaction":
            key = body.get("key")
            if not isinstance(key, dict) or not key.get("id") or "reaction" not in body:
                return json_response({"status": 400, "error": "key.id and reaction required"}, 400)
            return json_response(
                {
                    "key": {**key, "fromMe": True},
                    "message": {"reactionMessage": body},
                    "status": "PENDING",
                },
                201,
            )
        if not body.get("number") or not isinstance(body.get("text"), str):
            return json_response({"status": 400, "error": "number and text required"}, 400)
        return json_response(
            {
                "key": {
                    "remoteJid": body["number"],
                    "fromMe": True,
                    "id": f"STUB{len(self.calls)}",
                },
                "message": {"conversation": body["text"]},
                "status": "PENDING",
            },
            201,
        )

    def _fetch_instances(self, request: Request) -> Response:
        """Evolution v2: every instance's row with the global key; `instanceName` filters, an
        unknown one is 404 (as its monitor service answers)."""
        wanted = parse_qs(request.query).get("instanceName")
        if wanted:
            missing = [n for n in wanted if n not in self._instances]
            if missing:
                message = f'Instance "{", ".join(missing)}" not found'
                return json_response({"status": 404, "error": "Not Found", "message": message}, 404)
            return json_response([self._instances[n] for n in wanted])
        return json_response(list(self._instances.values()))

    def _base64(self, body: dict[str, Any]) -> Response:
        message = body.get("message")
        key = message.get("key") if isinstance(message, dict) else None
        message_id = key.get("id") if isinstance(key, dict) else None
        if not isinstance(message_id, str):
            return json_response({"status": 400, "error": "message.key.id required"}, 400)
        media = self._media.get(message_id)
        if media is None:
            return json_response({"status": 404, "error": f"media for {message_id} not found"}, 404)
        return json_response(
            {
                "mediaType": "audioMessage",
                "fileName": f"{message_id}.ogg",
                "size": {"fileLength": len(media.data)},
                "mimetype": media.mimetype,
                "base64": base64.b64encode(media.data).decode(),
            },
            201,
        )


async def publish_per_instance(
    channel: AbstractChannel, instance: str, event: dict[str, Any] | bytes
) -> None:
    """What Evolution API does per event with RABBITMQ_GLOBAL_ENABLED=false: assert the
    instance's topic exchange and its quorum queue `<instance>.<event>`, bind, publish."""
    body = event if isinstance(event, bytes) else msgspec.json.encode(event)
    name = "messages.upsert"
    exchange = await channel.declare_exchange(
        instance, aio_pika.ExchangeType.TOPIC, durable=True, auto_delete=False
    )
    queue = await channel.declare_queue(
        f"{instance}.{name}", durable=True, arguments={"x-queue-type": "quorum"}
    )
    await queue.bind(exchange, routing_key=name)
    await exchange.publish(
        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=name
    )


async def serve_forever(api_key: str, port: int) -> None:
    """`fila evolution-stub`: run until cancelled."""
    async with EvolutionStub(api_key=api_key, port=port) as stub:
        print(f"evolution stub listening on {stub.url}")
        await asyncio.Event().wait()
