"""Concurrent partial updates keep every change, and the Redis mirror ends as PostgreSQL does."""

from __future__ import annotations

import asyncio

import httpx
import redis.asyncio as aioredis

from fila.configstore import ConfigStore
from fila.keys import Keys
from fila.settings import Settings
from tests.test_controlplane_support import cp_proc, migrated

__all__ = ["cp_proc", "migrated"]


async def test_concurrent_partial_webhook_updates_keep_both_changes(
    cp_proc: httpx.AsyncClient, redis: aioredis.Redis, keys: Keys, settings: Settings
) -> None:
    cp = cp_proc
    original = (await cp.get("/webhook/global/config")).json()["data"]
    try:
        for n in range(8):
            url = f"http://receiver-{n}.example/hook"
            monitor = f"http://monitor-{n}.example/hook"
            results = await asyncio.gather(
                cp.put("/webhook/global/config", json={"principal": {"url": url}}),
                cp.put("/webhook/global/config", json={"monitoramento": {"url": monitor}}),
                cp.put("/webhook/global/config", json={"headers": {"x-round": str(n)}}),
            )
            assert [r.status_code for r in results] == [200, 200, 200], [
                r.text for r in results if r.status_code != 200
            ]
            stored = (await cp.get("/webhook/global/config")).json()["data"]
            assert stored["principal"]["url"] == url
            assert stored["monitoramento"]["url"] == monitor
            assert stored["headers"] == {"x-round": str(n)}
            mirrored = await ConfigStore(redis, keys, settings).webhook()
            assert mirrored.principal.url == url
            assert mirrored.monitoramento.url == monitor
            assert mirrored.headers == {"x-round": str(n)}
    finally:
        restore = {k: original[k] for k in ("principal", "monitoramento", "headers")}
        await cp.put("/webhook/global/config", json=restore)


async def test_concurrent_partial_schedule_updates_keep_every_field(
    cp_proc: httpx.AsyncClient,
) -> None:
    cp = cp_proc
    original = (await cp.get("/cleanup/schedule")).json()
    try:
        for n in range(8):
            results = await asyncio.gather(
                cp.put("/cleanup/schedule", json={"retentionDays": 10 + n}),
                cp.put("/cleanup/schedule", json={"dailyTime": f"0{n}:15"}),
                cp.put("/cleanup/schedule", json={"timezone": ("UTC", "Asia/Tokyo")[n % 2]}),
            )
            assert [r.status_code for r in results] == [200, 200, 200], [r.text for r in results]
            got = (await cp.get("/cleanup/schedule")).json()
            assert (got["retentionDays"], got["dailyTime"], got["timezone"]) == (
                10 + n,
                f"0{n}:15",
                ("UTC", "Asia/Tokyo")[n % 2],
            )
    finally:
        await cp.put("/cleanup/schedule", json=original)
