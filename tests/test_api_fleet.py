"""Operator routes: fleet table and overview, live stream, workers, metrics, emergency and bulk
filters, configuration export/import, readiness naming what is down."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from controlplane.app import create_app
from controlplane.fleet.controller import STREAM_SECONDS
from fila.audiofilter import AudioFilter, EmergencyFilter
from fila.keys import Keys
from fila.models import MonitoringEvent
from fila.settings import Settings
from fila.stats import Counters, record_latency
from fila.views import FleetOverview, InstancesView
from simulator.benchenv import database
from tests.support import Proc, wait_for
from tests.test_controlplane_support import cp, cp_proc, migrated, run_migrations
from tests.test_ingest_support import rabbit
from workers import monitoring
from workers.fleet import Fleet

__all__ = ["cp", "cp_proc", "migrated"]


async def test_instances_overview_and_workers(
    cp: AsyncTestClient[Any], settings: Settings, redis: aioredis.Redis, keys: Keys
) -> None:
    counters = Counters(redis, keys, settings.timezone)
    for n in range(500):  # the fleet's size: one call still returns every row
        await counters.bump(f"fl-{n:03d}", {"received": n + 1, "processed": n, "tooShort": 1})
    await cp.put(
        "/instance/fl-007/filters/audio",
        json={"minDurationSeconds": 9, "maxDurationSeconds": 99, "enabled": True},
    )
    await cp.put("/instance/fl-conf-only/filters/audio", json=_filter(4, 40, False))
    fleet = Fleet(settings, redis, "delivery")
    await fleet.beat()

    view = msgspec.json.decode((await cp.get("/fleet/instances")).content, type=InstancesView)
    rows = {r.instance: r for r in view.instances}
    assert {f"fl-{n:03d}" for n in range(500)} | {"fl-conf-only"} <= set(rows)
    assert rows["fl-012"].received == 13 and rows["fl-012"].processed == 12
    assert rows["fl-012"].tooShort == 1 and rows["fl-012"].lastSeen is not None
    assert (rows["fl-007"].minDurationSeconds, rows["fl-007"].maxDurationSeconds) == (9, 99)
    assert rows["fl-conf-only"].enabled is False and rows["fl-conf-only"].lastSeen is None
    assert rows["fl-012"].tokenCapacity == settings.rate_instance_capacity
    assert 0 < rows["fl-012"].tokens <= settings.rate_instance_capacity

    workers = (await cp.get("/workers")).json()["workers"]
    assert [w["id"] for w in workers] == [fleet.id]
    assert workers[0]["role"] == "delivery" and workers[0]["state"] == "running"

    overview = msgspec.json.decode((await cp.get("/fleet/overview")).content, type=FleetOverview)
    assert overview.workersAlive == 1 and overview.workers[0].id == fleet.id
    assert overview.totals["received"] == sum(n + 1 for n in range(500))
    assert overview.queueSize == 0 and overview.paused is False
    assert {h.name: h.ok for h in overview.health} == {
        "redis": True,
        "postgresql": True,
        "rabbitmq": True,
        "s3": True,
    }
    assert overview.rateLimitStatus is not None and overview.rateLimitStatus.refillRate
    codes = {a.code for a in overview.alerts}
    assert "worker_missing" in codes  # no ingest worker alive
    await fleet.stop()
    assert (await cp.get("/workers")).json()["workers"] == []


async def test_stream_sends_an_overview_each_second(cp_proc: httpx.AsyncClient) -> None:
    events: list[FleetOverview] = []
    async with cp_proc.stream("GET", "/fleet/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                events.append(msgspec.json.decode(line[5:].strip(), type=FleetOverview))
            if len(events) == 2:
                break
    # Successive snapshots, paced by the stream (a lower bound on the gap, not a speed check).
    assert events[1].timestamp - events[0].timestamp >= STREAM_SECONDS * 0.9


async def test_metrics_expose_fleet_figures(
    cp: AsyncTestClient[Any], settings: Settings, redis: aioredis.Redis, keys: Keys
) -> None:
    await Counters(redis, keys, settings.timezone).bump(
        "mx-a", {"processed": 7, "rateLimited": 3, "delivered": 5, "tooLong": 2}
    )
    await record_latency(redis, keys, "delivery", 0.2)
    await record_latency(redis, keys, "end_to_end", 3.0)
    # Due an hour from now: the control plane's own feedback loop must not end them mid-test.
    due = int((time.time() + 3600) * 1000)
    await redis.zadd(keys.feedback_sessions, {"mx-a:chat:1": due, "mx-a:chat:2": due + 1})
    response = await cp.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'fila_queue_depth{queue="global.messages"} 0.0' in text
    assert "fila_admits_total 7.0" in text
    assert "fila_rejects_total 3.0" in text
    assert "fila_deliveries_total 5.0" in text
    assert 'fila_filtered_total{reason="tooLong"} 2.0' in text
    assert "fila_feedback_sessions 2.0" in text
    assert f"fila_token_capacity {float(settings.rate_capacity)}" in text
    assert 'fila_delivery_latency_seconds_bucket{le="0.25"} 1.0' in text
    assert 'fila_end_to_end_latency_seconds_bucket{le="2.5"} 0.0' in text
    assert "fila_end_to_end_latency_seconds_count 1.0" in text
    assert "fila_cleanup_runs_total" in text
    for source in ("rabbitmq", "redis", "postgresql"):
        assert f'fila_source_up{{source="{source}"}} 1.0' in text


async def test_metrics_show_what_answers_when_a_source_is_down(settings: Settings) -> None:
    """PostgreSQL lost under a running control plane: its figures are missing and said to be,
    the other sources are still scraped."""
    name = f"fila_metrics_{uuid.uuid4().hex[:8]}"
    url = await database(settings, name, create=True)
    try:
        await asyncio.to_thread(run_migrations, settings.replace(database_url=url))
        async with AsyncTestClient(app=create_app(settings.replace(database_url=url))) as client:
            client.headers["apikey"] = settings.api_key
            assert 'fila_source_up{source="postgresql"} 1.0' in (await client.get("/metrics")).text
            await database(settings, name, create=False)  # dropped, its sessions terminated
            response = await client.get("/metrics")
            assert response.status_code == 200, response.text
            text = response.text
            assert 'fila_source_up{source="postgresql"} 0.0' in text
            assert 'fila_source_up{source="redis"} 1.0' in text
            assert "fila_cleanup_runs_total" not in text
            assert 'fila_queue_depth{queue="global.messages"}' in text
    finally:
        await database(settings, name, create=False)


def _filter(lo: int, hi: int, on: bool) -> dict[str, Any]:
    return {"minDurationSeconds": lo, "maxDurationSeconds": hi, "enabled": on}


async def test_emergency_and_bulk_filters(
    cp: AsyncTestClient[Any], settings: Settings, redis: aioredis.Redis, keys: Keys
) -> None:
    on = await cp.put("/filters/emergency", json={**_filter(30, 60, True), "reason": "flood"})
    assert on.json() == {**_filter(30, 60, True), "reason": "flood"}
    assert msgspec.json.decode(
        await redis.get(keys.config_emergency), type=EmergencyFilter
    ) == EmergencyFilter(enabled=True, minDurationSeconds=30, maxDurationSeconds=60, reason="flood")
    assert (await cp.get("/filters/emergency")).json()["enabled"] is True
    await cp.put("/filters/emergency", json={"enabled": False})

    named = await cp.put(
        "/filters/audio/bulk", json={"instances": ["bk-1", "bk-2"], **_filter(6, 66, True)}
    )
    assert named.json() == {"updated": 2}
    for name in ("bk-1", "bk-2"):
        assert (await cp.get(f"/instance/{name}/filters/audio")).json() == _filter(6, 66, True)
    await Counters(redis, keys, settings.timezone).bump("bk-seen", {"received": 1})
    every = await cp.put("/filters/audio/bulk", json={"instances": None, **_filter(8, 88, True)})
    assert every.json()["updated"] >= 3
    assert (await cp.get("/instance/bk-seen/filters/audio")).json() == _filter(8, 88, True)
    mirrored = await redis.hget(keys.config_filters, "bk-seen")
    assert msgspec.json.decode(mirrored, type=AudioFilter) == AudioFilter(
        minDurationSeconds=8, maxDurationSeconds=88, enabled=True
    )


async def test_export_then_import_round_trip(cp: AsyncTestClient[Any]) -> None:
    await cp.put("/instance/ex-1/filters/audio", json=_filter(11, 111, True))
    exported = (await cp.get("/config/export")).json()
    assert set(exported) == {"filters", "webhook", "cleanup", "ratelimit", "emergency"}
    assert exported["filters"]["ex-1"] == _filter(11, 111, True)

    changed = json.loads(json.dumps(exported))
    changed["filters"]["ex-1"] = _filter(12, 120, False)
    changed["filters"]["ex-2"] = _filter(5, 50, True)
    changed["cleanup"]["retentionDays"] = 9
    changed["ratelimit"]["capacity"] = 321
    imported = await cp.post("/config/import", json=changed)
    assert imported.status_code == 200, imported.text
    again = (await cp.get("/config/export")).json()
    assert again["filters"]["ex-1"] == _filter(12, 120, False)
    assert again["filters"]["ex-2"] == _filter(5, 50, True)
    assert again["cleanup"]["retentionDays"] == 9 and again["ratelimit"]["capacity"] == 321

    broken = json.loads(json.dumps(changed))
    broken["filters"]["ex-3"] = _filter(0, 10, True)
    refused = await cp.post("/config/import", json=broken)
    assert refused.status_code == 400
    assert refused.json()["field"] == "filters.ex-3.minDurationSeconds"
    assert "ex-3" not in (await cp.get("/config/export")).json()["filters"]  # nothing written
    # A bad webhook URL is refused before the (valid) filters ahead of it are written.
    late = json.loads(json.dumps(changed))
    late["filters"]["ex-4"] = _filter(4, 40, True)
    late["webhook"]["principal"] = {"enabled": True, "url": "ftp://example.com/in"}
    refused = await cp.post("/config/import", json=late)
    assert refused.status_code == 400, refused.text
    assert refused.json()["field"] == "webhook.principal.url"
    assert "ex-4" not in (await cp.get("/config/export")).json()["filters"]
    exported["ratelimit"]["capacity"] = 500
    assert (await cp.post("/config/import", json=exported)).status_code == 200


async def test_readyz_names_the_dependency_that_is_down(
    settings: Settings, migrated: Settings
) -> None:
    broken = settings.replace(s3_endpoint_url="http://127.0.0.1:9")
    async with AsyncTestClient(app=create_app(broken)) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["message"] == "not ready: s3 down"
        assert {d["name"]: d["ok"] for d in body["dependencies"]} == {
            "redis": True,
            "postgresql": True,
            "rabbitmq": True,
            "s3": False,
        }
        client.headers["apikey"] = settings.api_key
        run = await client.post("/cleanup/execute")
        assert run.status_code == 200
        assert run.json()["success"] is False and run.json()["errorCount"] >= 1
        status = (await client.get("/cleanup/status")).json()
        assert status["running"] is None  # the lock was given back


async def test_a_page_of_5000_instances_is_sorted_filtered_and_small(
    cp_proc: httpx.AsyncClient, settings: Settings, redis: aioredis.Redis, keys: Keys
) -> None:
    cp = cp_proc
    counters = Counters(redis, keys, settings.timezone)
    pipe = redis.pipeline(transaction=False)
    for n in range(5000):
        counters.bump_on(pipe, f"big-{n:04d}", {"received": (n * 7919) % 5000, "processed": 1})
    await pipe.execute()

    # Configured-only instances of other tests (filters in PostgreSQL) are in the table too.
    response = await cp.get(
        "/fleet/instances", params={"sort": "received", "order": "desc", "limit": 40, "q": "big-"}
    )
    assert response.status_code == 200, response.text
    assert len(response.content) < 20_000
    view = msgspec.json.decode(response.content, type=InstancesView)
    assert view.total >= 5000
    assert (view.matched, view.offset, view.limit) == (5000, 0, 40)
    received = [r.received for r in view.instances]
    assert received == sorted(received, reverse=True) and received[0] == 4999
    assert all(r.tokenCapacity == settings.rate_instance_capacity for r in view.instances)

    second = msgspec.json.decode(
        (
            await cp.get(
                "/fleet/instances",
                params={"sort": "received", "order": "desc", "offset": 40, "limit": 40, "q": "big"},
            )
        ).content,
        type=InstancesView,
    )
    assert second.instances[0].received <= received[-1]
    assert not {r.instance for r in second.instances} & {r.instance for r in view.instances}

    found = msgspec.json.decode(
        (await cp.get("/fleet/instances", params={"q": "BIG-004", "limit": 5})).content,
        type=InstancesView,
    )
    assert found.matched == 10 and [r.instance for r in found.instances] == [
        f"big-004{d}" for d in range(5)
    ]
    # The whole fleet (no limit) is the same JSON, streamed in slices, in the same order.
    chunks: list[bytes] = []
    whole_params = {"sort": "received", "order": "desc", "q": "big-", "offset": 40}
    async with cp.stream("GET", "/fleet/instances", params=whole_params) as streamed:
        assert streamed.status_code == 200
        assert streamed.headers.get("transfer-encoding") == "chunked"  # not one buffer
        chunks = [chunk async for chunk in streamed.aiter_raw()]
    whole = msgspec.json.decode(b"".join(chunks), type=InstancesView)
    assert (whole.matched, whole.offset, whole.limit, len(whole.instances)) == (
        5000,
        40,
        None,
        4960,
    )
    assert whole.instances[:40] == second.instances
    rest = [r.received for r in whole.instances]
    assert rest == sorted(rest, reverse=True) and rest[0] <= received[-1]
    for params, field in (
        ({"sort": "colour"}, "sort"),
        ({"limit": 0}, "limit"),
        ({"limit": 5000}, "limit"),
        ({"offset": -1}, "offset"),
    ):
        refused = await cp.get("/fleet/instances", params=params)
        assert (refused.status_code, refused.json().get("field")) == (400, field), refused.text


async def test_an_idle_instance_leaves_the_table_but_its_counters_stay_readable(
    settings: Settings, migrated: Settings, redis: aioredis.Redis, keys: Keys
) -> None:
    short = settings.replace(fleet_idle_seconds=3.0, fleet_stats_retention_days=2)
    counters = Counters(redis, keys, settings.timezone, short.fleet_stats_retention_days)
    async with AsyncTestClient(app=create_app(short), timeout=30) as client:
        client.headers["apikey"] = short.api_key
        # Seen after the app is up: its start-up must not already count as the idle time.
        await counters.bump("quiet-one", {"received": 4, "processed": 3})
        ttl = await redis.ttl(keys.stats_instance("quiet-one"))
        assert 2 * 86400 - 60 < ttl <= 2 * 86400
        listed = (await client.get("/fleet/instances")).json()
        assert "quiet-one" in {r["instance"] for r in listed["instances"]}
        await asyncio.sleep(4.2)  # idle past FILA_FLEET_IDLE_SECONDS, and a fresh snapshot
        await counters.bump("busy-one", {"received": 1})
        names: set[str] = set()
        for _ in range(50):  # rows are refreshed in the background, at most a second old
            listed = (await client.get("/fleet/instances")).json()
            names = {r["instance"] for r in listed["instances"]}
            if "busy-one" in names:
                break
            await asyncio.sleep(0.1)
        assert "busy-one" in names and "quiet-one" not in names
        one = await client.get("/fleet/instances/quiet-one")
        assert one.status_code == 200 and (one.json()["received"], one.json()["processed"]) == (
            4,
            3,
        )
        assert (await client.get("/fleet/instances/never-was")).status_code == 404


async def test_overview_names_the_busiest_the_latest_errors_and_only_live_circuits(
    cp: AsyncTestClient[Any],
    settings: Settings,
    redis: aioredis.Redis,
    keys: Keys,
    spawn: Callable[..., Proc],
) -> None:
    counters = Counters(redis, keys, settings.timezone)
    await counters.bump("loud", {"rateLimited": 9, "tooShort": 1})
    await counters.bump("picky", {"tooShort": 30, "tooLong": 4})
    await counters.bump("broken", {"ingestFailed": 2, "deliveryFailed": 3})
    configured = await cp.put(
        "/webhook/global/config",
        json={"principal": {"enabled": True, "url": "http://127.0.0.1:9/now"}},
    )
    assert configured.status_code == 200, configured.text
    opened = msgspec.json.encode({"state": "open", "failures": 5, "openedAt": 1.0})
    await redis.hset(keys.breakers, "http://127.0.0.1:9/now/messages-upsert", opened)
    await redis.hset(keys.breakers, "http://127.0.0.1:9/replaced", opened)

    worker = spawn(["worker", "delivery"], settings)  # its monitoring sender notes queue.error
    async with rabbit(settings) as mq:
        await monitoring.publish(
            mq.channel,
            settings,
            MonitoringEvent(
                event="queue.error",
                timestamp="2026-12-01T00:00:00Z",
                data={"error": "Ingest failed: media_not_found", "instance": "broken"},
                server_url=settings.server_url,
                instance="broken",
            ),
        )

        async def noted() -> bool:
            body = (await cp.get("/fleet/overview")).json()
            return bool(body["recentErrors"])

        try:
            await wait_for(noted, timeout=60)
        except AssertionError:
            raise AssertionError(worker.output()[-2000:]) from None
    overview = msgspec.json.decode((await cp.get("/fleet/overview")).content, type=FleetOverview)
    [error] = overview.recentErrors
    assert (error.instance, error.error) == ("broken", "Ingest failed: media_not_found")
    assert [(c.instance, c.count) for c in overview.busiest.rejected] == [("loud", 9)]
    assert [(c.instance, c.count) for c in overview.busiest.filtered] == [
        ("picky", 34),
        ("loud", 1),
    ]
    assert [(c.instance, c.count) for c in overview.busiest.failed] == [("broken", 5)]
    assert overview.openCircuits == ["http://127.0.0.1:9/now/messages-upsert"]
    assert [a.message for a in overview.alerts if a.code == "circuit_open"] == [
        "circuit open: http://127.0.0.1:9/now/messages-upsert"
    ]
