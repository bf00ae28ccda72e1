"""Global webhook routes: partial merge, URL rules, DELETE keeps URLs, the real test call."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import msgspec
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from controlplane.app import create_app
from fila.keys import Keys
from fila.models import WebhookConfig
from fila.settings import Settings
from simulator.receiver import Receiver
from tests.test_controlplane_support import cp, cp_proc, free_port, migrated

__all__ = ["cp", "cp_proc", "migrated"]


async def test_config_merge_delete_and_mirror(
    cp: AsyncTestClient[Any], redis: aioredis.Redis, keys: Keys
) -> None:
    first = await cp.post(
        "/webhook/global/config",
        json={
            "principal": {"enabled": True, "url": "http://hooks.example.com/main"},
            "headers": {"x-team": "audio"},
        },
    )
    assert first.status_code == 200, first.text
    data = first.json()["data"]
    assert first.json()["success"] is True
    assert set(data) == {
        "principal",
        "monitoramento",
        "webhookByEvents",
        "headers",
        "createdAt",
        "updatedAt",
    }
    assert data["principal"] == {"enabled": True, "url": "http://hooks.example.com/main"}
    assert data["headers"] == {"x-team": "audio"}

    merged = await cp.put(
        "/webhook/global/config",
        json={"monitoramento": {"enabled": True, "url": "https://mon.example.com/x"}},
    )
    data = merged.json()["data"]
    assert data["principal"] == {"enabled": True, "url": "http://hooks.example.com/main"}
    assert data["monitoramento"] == {"enabled": True, "url": "https://mon.example.com/x"}
    assert data["headers"] == {"x-team": "audio"}
    assert dt.datetime.fromisoformat(data["updatedAt"]) >= dt.datetime.fromisoformat(
        data["createdAt"]
    )
    mirror = msgspec.json.decode(await redis.get(keys.config_webhook), type=WebhookConfig)
    assert mirror.monitoramento.url == "https://mon.example.com/x" and mirror.principal.enabled

    gone = await cp.delete("/webhook/global/config")
    assert gone.status_code == 200
    body = gone.json()
    assert body["success"] is True and body["message"]
    assert body["data"]["principal"] == {"enabled": False, "url": "http://hooks.example.com/main"}
    assert body["data"]["monitoramento"] == {"enabled": False, "url": "https://mon.example.com/x"}
    assert dt.datetime.fromisoformat(body["data"]["disabledAt"]).utcoffset() is not None
    after = (await cp.get("/webhook/global/config")).json()["data"]
    assert after["principal"]["url"] == "http://hooks.example.com/main"
    assert not after["principal"]["enabled"] and not after["monitoramento"]["enabled"]
    mirror = msgspec.json.decode(await redis.get(keys.config_webhook), type=WebhookConfig)
    assert not mirror.principal.enabled and mirror.principal.url

    enabled_without_url = await cp.post(
        "/webhook/global/config", json={"principal": {"enabled": True, "url": ""}}
    )
    assert enabled_without_url.status_code == 400
    assert enabled_without_url.json()["field"] == "principal.url"


async def test_test_route_calls_the_url_for_real(cp_proc: httpx.AsyncClient) -> None:
    """Through the real process: the receiver runs in this test's loop."""
    cp = cp_proc
    async with Receiver() as receiver:
        url = f"{receiver.url.rstrip('/')}/hook"
        response = await cp.post("/webhook/global/test", json={"url": url, "type": "principal"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True, body
        data = body["data"]
        assert {
            "url",
            "success",
            "statusCode",
            "statusText",
            "responseTime",
            "headers",
            "testedAt",
        } <= set(data)
        assert data["url"] == url and data["statusCode"] == 200 and data["statusText"] == "OK"
        assert data["responseTime"].endswith("ms") and int(data["responseTime"][:-2]) >= 0
        assert "content-type" in {k.lower() for k in data["headers"]}
        assert len(receiver.deliveries) == 1
        assert receiver.deliveries[0].json["event"] == "webhook.test"

        receiver.fail_with(503)
        failing = (await cp.post("/webhook/global/test", json={"url": url})).json()
        assert failing["success"] is False and failing["data"]["statusCode"] == 503

    closed = free_port()
    down = await cp.post(
        "/webhook/global/test",
        json={"url": f"http://127.0.0.1:{closed}/x", "type": "monitoramento"},
    )
    assert down.status_code == 200
    assert down.json()["success"] is False
    assert down.json()["data"]["statusCode"] is None
    assert down.json()["data"]["error"]


async def test_private_targets_refused_when_blocked(settings: Settings, migrated: Settings) -> None:
    guarded = settings.replace(webhook_block_private=True)
    async with AsyncTestClient(app=create_app(guarded)) as client:
        client.headers["apikey"] = settings.api_key
        for url in ("http://127.0.0.1:8080/hook", "http://10.1.2.3/hook", "http://localhost/x"):
            refused = await client.post(
                "/webhook/global/config", json={"principal": {"enabled": True, "url": url}}
            )
            assert refused.status_code == 400, url
            assert refused.json()["field"] == "principal.url"
            assert "private or loopback" in refused.json()["message"]
        test = await client.post("/webhook/global/test", json={"url": "http://192.168.0.10/x"})
        assert test.status_code == 400 and test.json()["field"] == "url"
