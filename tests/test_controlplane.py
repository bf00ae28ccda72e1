"""Control plane against the real servers: contract routes, validation, auth, propagation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from fila.audiofilter import AudioFilter
from fila.keys import Keys
from fila.settings import Settings
from tests.support import Proc, wait_for
from tests.test_controlplane_support import cp, free_port, migrated, unthrottled

__all__ = ["cp", "migrated"]


async def test_subprocess_serves_health_filters_and_schema(
    settings: Settings, migrated: Settings, spawn: Callable[..., Proc]
) -> None:
    port = free_port()
    proc = spawn(["controlplane"], settings, FILA_HTTP_PORT=str(port))
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:

        async def up() -> bool:
            try:
                return (await client.get("/healthz")).status_code == 200
            except httpx.TransportError:
                assert proc.popen.poll() is None, proc.output()
                return False

        await wait_for(up, timeout=60, interval=0.2)
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert {d["name"] for d in ready.json()["dependencies"]} == {
            "redis",
            "postgresql",
            "rabbitmq",
            "s3",
        }
        assert (await client.get("/queue/stats")).status_code == 401
        key = {"apikey": settings.api_key}
        fresh = await client.get("/instance/never-configured/filters/audio", headers=key)
        assert fresh.json() == {
            "minDurationSeconds": 3,
            "maxDurationSeconds": 7200,
            "enabled": True,
        }
        put = await client.put(
            "/instance/sub-a/filters/audio",
            json={"minDurationSeconds": 5, "maxDurationSeconds": 60, "enabled": False},
            headers=key,
        )
        assert put.status_code == 200, put.text
        body = put.json()
        assert set(body) == {
            "id",
            "instanceName",
            "minDurationSeconds",
            "maxDurationSeconds",
            "enabled",
            "createdAt",
            "updatedAt",
        }
        assert body["instanceName"] == "sub-a" and body["maxDurationSeconds"] == 60
        got = await client.get("/instance/sub-a/filters/audio", headers=key)
        assert got.json() == {"minDurationSeconds": 5, "maxDurationSeconds": 60, "enabled": False}
        schema = await client.get("/schema/openapi.json", headers=key)
        assert schema.status_code == 200
        assert "/queue/stats" in schema.json()["paths"]
    assert proc.terminate() == 0, proc.output()


PUBLIC_PATHS = {"/healthz", "/readyz"}


async def test_every_route_needs_the_apikey(cp: AsyncTestClient[Any]) -> None:
    """Walks the served OpenAPI, so a route added later is covered without editing this test."""
    unthrottled(cp)
    schema = (await cp.get("/schema/openapi.json")).json()
    assert (await cp.get("/schema/openapi.json", headers={"apikey": "wrong"})).status_code == 401
    checked = 0
    for path, item in schema["paths"].items():
        concrete = path.replace("{", "").replace("}", "")
        for method in item:
            if method not in ("get", "post", "put", "delete", "patch"):
                continue
            for headers in ({"apikey": ""}, {"apikey": "wrong-key"}, None):
                request = cp.build_request(method.upper(), concrete)
                if headers is None:
                    del request.headers["apikey"]
                else:
                    request.headers["apikey"] = headers["apikey"]
                if path == "/fleet/stream":
                    response = await cp.send(request, stream=True)
                    if response.status_code == 401:
                        await response.aread()
                    await response.aclose()
                else:
                    response = await cp.send(request)
                if path in PUBLIC_PATHS:
                    assert response.status_code != 401, (method, path)
                else:
                    assert response.status_code == 401, (method, path, response.text)
                    assert "apikey" in response.json()["message"]
            checked += 1
    assert checked >= 30


async def test_filter_put_is_mirrored_and_announced(
    cp: AsyncTestClient[Any], redis: aioredis.Redis, keys: Keys
) -> None:
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.control_channel)
    try:
        response = await cp.put(
            "/instance/mirror-a/filters/audio",
            json={"minDurationSeconds": 10, "maxDurationSeconds": 120, "enabled": True},
        )
        assert response.status_code == 200, response.text
        raw = await redis.hget(keys.config_filters, "mirror-a")
        assert raw is not None
        assert msgspec.json.decode(raw, type=AudioFilter) == AudioFilter(
            minDurationSeconds=10, maxDurationSeconds=120, enabled=True
        )
        seen: list[dict[str, Any]] = []

        async def announced() -> bool:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message and message["type"] == "message":
                seen.append(msgspec.json.decode(message["data"]))
            return any(
                m.get("scope") == "filters" and m.get("instance") == "mirror-a" for m in seen
            )

        await wait_for(announced, timeout=20)
        assert all(m["kind"] == "config" for m in seen)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


def _event(**change: Any) -> dict[str, Any]:
    """A voice note event with one key or audio field changed (None: left out)."""
    key: dict[str, Any] = {"remoteJid": "5511@s.whatsapp.net", "fromMe": False, "id": "V1"}
    audio: dict[str, Any] = {"seconds": 10, "mimetype": "audio/ogg; codecs=opus"}
    for name, value in change.items():
        target = audio if name == "seconds" else key
        if value is None:
            del target[name]
        else:
            target[name] = value
    return {
        "event": "messages.upsert",
        "instance": "v",
        "data": {"key": key, "message": {"audioMessage": audio}},
    }


_ABSENT = object()


def _bad_filter(
    field: str, low: object, high: object, enabled: object = True
) -> tuple[str, str, dict[str, Any], str]:
    """A PUT of instance v's audio filter that names `field` (no "enabled" when _ABSENT)."""
    body = {"minDurationSeconds": low, "maxDurationSeconds": high}
    if enabled is not _ABSENT:
        body["enabled"] = enabled
    return ("PUT", "/instance/v/filters/audio", body, field)


VALIDATION = [
    _bad_filter("minDurationSeconds", 0, 10),
    _bad_filter("minDurationSeconds", 301, 400),
    _bad_filter("maxDurationSeconds", 10, 5),
    _bad_filter("maxDurationSeconds", 10, 7201),
    _bad_filter("enabled", 10, 50, "yes"),
    _bad_filter("enabled", 10, 50, _ABSENT),
    (
        "PUT",
        "/filters/audio/bulk",
        {"instances": ["a"], "minDurationSeconds": 0, "maxDurationSeconds": 50, "enabled": True},
        "minDurationSeconds",
    ),
    (
        "PUT",
        "/filters/emergency",
        {"enabled": True, "minDurationSeconds": 9, "maxDurationSeconds": 8},
        "maxDurationSeconds",
    ),
    ("PUT", "/cleanup/schedule", {"dailyTime": "25:00"}, "dailyTime"),
    ("PUT", "/cleanup/schedule", {"dailyTime": "3:00"}, "dailyTime"),
    ("PUT", "/cleanup/schedule", {"timezone": "Mars/Olympus"}, "timezone"),
    ("PUT", "/cleanup/schedule", {"retentionDays": 0}, "retentionDays"),
    (
        "POST",
        "/webhook/global/config",
        {"principal": {"url": "ftp://example.com/x"}},
        "principal.url",
    ),
    ("PUT", "/webhook/global/config", {"monitoramento": {"url": "not a url"}}, "monitoramento.url"),
    ("POST", "/webhook/global/test", {"url": "file:///etc/passwd", "type": "principal"}, "url"),
    ("POST", "/webhook/global/test", {"url": "http://127.0.0.1:1/x", "type": "other"}, "type"),
    ("PUT", "/ratelimit", {"capacity": 0}, "capacity"),
    ("PUT", "/ratelimit", {"refillPerMinute": 0}, "refillPerMinute"),
    ("PUT", "/ratelimit", {"policy": "drop"}, "policy"),
    (
        "POST",
        "/webhook/evolution",
        {"event": "messages.upsert", "data": {"key": {"id": "x"}}},
        "instance",
    ),
    ("POST", "/webhook/evolution", {"instance": "i", "data": {"key": {}}}, "data.key.id"),
    # Refused here because the ingest worker would dead-letter them (its own reading rule).
    *[
        ("POST", "/webhook/evolution", _event(**change), field)
        for change, field in (
            ({"fromMe": "false"}, "data.key.fromMe"),
            ({"id": " "}, "data.key.id"),
            ({"remoteJid": None}, "data.key.remoteJid"),
            ({"seconds": -1}, "data.message.audioMessage.seconds"),
            ({"seconds": "ten"}, "data.message.audioMessage.seconds"),
        )
    ],
    ("POST", "/queue/pause", {"role": "everyone"}, "role"),
    # Values a lenient conversion would take ("0" as false, "5" as 5, 5.0 as 5): wrong types.
    _bad_filter("enabled", 5, 50, "0"),
    _bad_filter("minDurationSeconds", "5", 50),
    _bad_filter("maxDurationSeconds", 5, 50.0),
    ("PUT", "/filters/emergency", {"enabled": 1}, "enabled"),
    ("PUT", "/cleanup/schedule", {"retentionDays": "7"}, "retentionDays"),
    ("PUT", "/cleanup/schedule", {"enabled": "false"}, "enabled"),
    ("PUT", "/ratelimit", {"capacity": "500"}, "capacity"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), VALIDATION)
async def test_validation_names_the_field(
    cp: AsyncTestClient[Any], method: str, path: str, body: dict[str, Any], field: str
) -> None:
    response = await cp.request(method, path, json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["statusCode"] == 400
    assert error["field"] == field, error
    assert error["message"].startswith(f"{field}: "), error
    assert len(error["message"]) > len(field) + 3


async def test_malformed_bodies_and_unknown_routes_answer_in_the_error_shape(
    cp: AsyncTestClient[Any],
) -> None:
    garbage = await cp.put(
        "/instance/x/filters/audio",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert garbage.status_code == 400, garbage.text
    assert garbage.json()["statusCode"] == 400 and garbage.json()["field"] == "body"
    wrong_type = await cp.put("/cleanup/schedule", json={"retentionDays": "seven"})
    assert wrong_type.status_code == 400 and wrong_type.json()["field"] == "retentionDays"
    missing = await cp.get("/no/such/route")
    assert missing.status_code == 404 and missing.json()["statusCode"] == 404
