"""Dependency holds against real outages: S3, the receiver, Redis and Evolution API go down while
voice notes arrive; nothing is dead-lettered for it, everything is delivered once they return,
and a 404 media URL is still dead-lettered with its reason in the same run.

Each outage is private to the test: S3 and Redis are reached through a TCP proxy that is cut
(the shared servers stay up for everyone else), the receiver and the Evolution API are the
test's own. Schedules are compressed (probe every second, a short delivery ladder); the outages
are real and last several times longer than those schedules.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import httpx
import msgspec
import pytest
import redis.asyncio as aioredis

from fila import deadletters, dlq, topology
from fila.dev import services
from fila.keys import Keys
from fila.settings import Settings
from simulator.evolution import EvolutionStub
from simulator.receiver import Receiver
from tests.faults import TcpProxy
from tests.support import Proc, wait_for
from tests.test_controlplane_support import cp_proc, migrated
from tests.test_ingest_support import audio_event, workers

Spawn = Callable[..., Proc]
__all__ = ["cp_proc", "migrated"]


def _tuned(
    settings: Settings,
    main: Receiver,
    monitor: Receiver,
    evolution: EvolutionStub | None = None,
    **changes: Any,
) -> Settings:
    """Quick probes and heartbeats; the main and monitoring webhooks at `main` and `monitor`;
    media from `evolution` when given, two attempts each."""
    if evolution is not None:
        changes.update(evolution_url=evolution.url, ingest_max_attempts=2)
    return settings.replace(
        hold_probe_seconds=1.0,
        heartbeat_seconds=0.5,
        monitoring_flush_seconds=0.5,
        breaker_probe_seconds=1.0,
        webhook_principal_url=main.url,
        webhook_monitoring_url=monitor.url,
        **changes,
    )


def _missing_media(instance: str, message_id: str, url: str) -> dict[str, Any]:
    """A voice note Evolution API has no copy of, whose media URL answers 404."""
    event = audio_event(instance, message_id, 10)
    event["data"]["message"]["audioMessage"].update(
        url=url, mediaKey=base64.b64encode(os.urandom(32)).decode()
    )
    return event


async def _publish(settings: Settings, events: list[dict[str, Any]]) -> None:
    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare_ingest(channel, settings)
        exchange = await channel.get_exchange(settings.evolution_exchange)
        for event in events:
            await exchange.publish(
                aio_pika.Message(
                    msgspec.json.encode(event), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                ),
                routing_key=settings.evolution_routing_key,
            )


async def _letters(settings: Settings) -> tuple[list[deadletters.DeadLetter], int]:
    """Ingest dead letters, and how many delivery dead letters there are."""
    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        ingest = await dlq.browse(channel, topology.INGEST_DLQ, limit=1000)
        delivery = await dlq.browse(channel, topology.GLOBAL_DLQ, limit=1000)
    return ingest, len(delivery)


def _delivered(receiver: Receiver) -> set[str]:
    return {d.json["data"]["key"]["id"] for d in receiver.accepted()}


def _hold_events(monitor: Receiver, dependency: str) -> list[str]:
    return [
        e["data"]["state"]
        for e in monitor.by_event("queue.hold")
        if e["data"]["dependency"] == dependency
    ]


OUTAGE = float(os.environ.get("FILA_HOLD_OUTAGE_SECONDS", "20"))
"""How long S3 stays down in the S3 test; the CI run keeps it short, FILA_HOLD_OUTAGE_SECONDS=600
runs the issue's 10 minutes."""
SHORT_OUTAGE = float(os.environ.get("FILA_HOLD_SHORT_OUTAGE_SECONDS", "20"))
"""How long Redis, then getBase64, stay down in their test (60 for the issue's run)."""
NOTES = int(os.environ.get("FILA_HOLD_NOTES", "40"))
"""Voice notes sent during that outage (300 for the long run)."""


async def _holding(redis: aioredis.Redis, keys: Keys, dependency: str) -> bool:
    return any(
        h["dependency"] == dependency for w in await workers(redis, keys) for h in w["holds"]
    )


async def _proxy_to(url: str, default_port: int) -> TcpProxy:
    """A started proxy to the server `url` names (on its port, else `default_port`)."""
    proxy = TcpProxy("127.0.0.1", urlsplit(url).port or default_port)
    await proxy.start()
    return proxy


def _through(proxy: TcpProxy, url: str) -> str:
    """`url` with the proxy's address in place of its server's."""
    return urlsplit(url)._replace(netloc=proxy.url_host).geturl()


@asynccontextmanager
async def _receivers(settings: Settings) -> AsyncIterator[tuple[Receiver, Receiver]]:
    """The main and the monitoring webhook receivers."""
    async with (
        Receiver(secret=settings.webhook_secret) as main,
        Receiver(secret=settings.webhook_secret) as monitor,
    ):
        yield main, monitor


@pytest.mark.usefixtures("migrated")
async def test_s3_outage_holds_ingest_and_a_404_is_still_dead_lettered(
    settings: Settings,
    spawn: Spawn,
    cp_proc: httpx.AsyncClient,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    s3 = await _proxy_to(settings.s3_endpoint_url, services.S3_PORT)
    async with (
        _receivers(settings) as (main, monitor),
        EvolutionStub(settings.evolution_api_key) as evolution,
    ):
        tuned = _tuned(
            settings,
            main,
            monitor,
            evolution,
            s3_endpoint_url=f"http://127.0.0.1:{s3.port}",
            s3_public_endpoint_url=settings.s3_endpoint_url,
        )
        # The control plane mirrored the run's PostgreSQL into this test's Redis at its start:
        # what earlier tests stored there (another receiver, filters) must not decide here.
        for path, body in (
            (
                "/webhook/global/config",
                {
                    "principal": {"enabled": True, "url": main.url},
                    "monitoramento": {"enabled": True, "url": monitor.url},
                    "webhookByEvents": False,
                    "headers": {},
                },
            ),
            ("/filters/emergency", {"enabled": False}),
            (
                "/instance/inst-a/filters/audio",
                {"minDurationSeconds": 3, "maxDurationSeconds": 7200, "enabled": True},
            ),
        ):
            answer = await cp_proc.put(path, json=body)
            assert answer.status_code == 200, (path, answer.text)
        for _ in range(2):
            spawn(["worker", "ingest"], tuned)
        spawn(["worker", "delivery"], tuned)
        await wait_for(lambda: _count_workers(redis, keys, 3), timeout=30, interval=0.2)

        gone = f"{evolution.url}/media/never-there"
        await _publish(tuned, [_missing_media("inst-a", "GONE-1", gone)])
        await s3.cut()
        cut_at = time.monotonic()
        notes = [
            audio_event("inst-a", f"S3-{i:03d}", 10, data=os.urandom(800)) for i in range(NOTES)
        ]
        half = NOTES // 2
        await _publish(tuned, [*notes[:half], _missing_media("inst-a", "GONE-2", gone)])

        async def hold_in_workers_route() -> bool:
            body = (await cp_proc.get("/workers")).json()
            return any(
                w["holding"].startswith("holding: s3 unreachable since") for w in body["workers"]
            )

        await wait_for(hold_in_workers_route, timeout=30, interval=0.5)
        metrics = (await cp_proc.get("/metrics")).text
        assert 'fila_dependency_holds{dependency="s3"} 1' in metrics or (
            'fila_dependency_holds{dependency="s3"} 2' in metrics
        ), metrics
        overview = (await cp_proc.get("/fleet/overview")).json()
        assert any(a["code"] == "dependency_hold" for a in overview["alerts"]), overview["alerts"]
        await _publish(tuned, notes[half:])
        await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - cut_at)))  # the whole outage
        assert not _delivered(main) & {f"S3-{i:03d}" for i in range(NOTES)}
        letters, delivery_letters = await _letters(tuned)
        # Only the 404s (GONE-2 too, if a worker met it before it knew of the hold).
        assert "inst-a:GONE-1" in {x.id for x in letters}
        assert {x.id for x in letters} <= {"inst-a:GONE-1", "inst-a:GONE-2"}
        await s3.restore()
        back = time.monotonic()

        wanted = {f"S3-{i:03d}" for i in range(NOTES)}
        await wait_for(lambda: wanted <= _delivered(main), timeout=60, interval=0.5)
        print(
            f"\nS3 outage {OUTAGE:g} s: {NOTES}/{NOTES} delivered"
            f" {time.monotonic() - back:.1f} s after return"
        )
        await wait_for(lambda: _hold_events(monitor, "s3") == ["started", "ended"], timeout=20)
        await wait_for(lambda: _gone_letters(tuned, 2), timeout=30, interval=0.5)
        letters, delivery_letters = await _letters(tuned)
        assert delivery_letters == 0
        assert sorted(x.id for x in letters) == ["inst-a:GONE-1", "inst-a:GONE-2"]
        assert {x.reason for x in letters} == {"download_failed"}, [x.reason for x in letters]

        def reported() -> dict[str, str]:
            return {
                e["data"]["messageId"]: e["data"]["detail"] for e in monitor.by_event("queue.error")
            }

        await wait_for(lambda: {"GONE-1", "GONE-2"} <= set(reported()), timeout=20)
        assert all("404" in reported()[k] for k in ("GONE-1", "GONE-2")), reported()
        assert set(reported()) == {"GONE-1", "GONE-2"}, "a held note was reported as an error"
        await wait_for(lambda: _released(redis, keys, "s3"), timeout=10, interval=0.2)
        assert _hold_events(monitor, "s3") == ["started", "ended"]
    await s3.close()


async def test_receiver_down_longer_than_the_ladder_loses_nothing(
    settings: Settings, spawn: Spawn, redis: aioredis.Redis, keys: Keys
) -> None:
    async with _receivers(settings) as (main, monitor):
        tuned = _tuned(
            settings, main, monitor, delivery_retry_schedule="0.5,1,1", breaker_failures=3
        )
        spawn(["worker", "ingest"], tuned)
        spawn(["worker", "delivery"], tuned)
        await wait_for(lambda: _count_workers(redis, keys, 2), timeout=30, interval=0.2)
        await main.go_down()
        notes = [audio_event("inst-r", f"RX-{i:03d}", 10, data=os.urandom(600)) for i in range(30)]
        await _publish(tuned, notes)
        await wait_for(lambda: _holding(redis, keys, "receiver"), timeout=30, interval=0.2)
        await asyncio.sleep(12)  # the whole ladder (2.5 s) several times over
        _, delivery_letters = await _letters(tuned)
        assert delivery_letters == 0
        await main.come_up()
        wanted = {f"RX-{i:03d}" for i in range(30)}
        await wait_for(lambda: wanted <= _delivered(main), timeout=30, interval=0.5)
        await wait_for(lambda: _hold_events(monitor, "receiver") == ["started", "ended"])
        _, delivery_letters = await _letters(tuned)
        assert delivery_letters == 0
        assert not monitor.by_event("queue.error")


async def test_redis_then_evolution_down_in_turn(
    settings: Settings, spawn: Spawn, redis: aioredis.Redis, keys: Keys
) -> None:
    proxy = await _proxy_to(settings.redis_url, services.REDIS_PORT)
    async with (
        _receivers(settings) as (main, monitor),
        EvolutionStub(settings.evolution_api_key) as evolution,
    ):
        redis_url = _through(proxy, settings.redis_url)
        tuned = _tuned(settings, main, monitor, evolution, redis_url=redis_url)
        procs = [spawn(["worker", role], tuned) for role in ("ingest", "delivery")]
        await wait_for(lambda: _count_workers(redis, keys, 2), timeout=30, interval=0.2)

        # Redis down (20 s here, 60 s with FILA_HOLD_SHORT_OUTAGE_SECONDS=60) while notes arrive.
        await proxy.cut()
        await _publish(
            tuned,
            [audio_event("inst-x", f"RD-{i:03d}", 10, data=os.urandom(600)) for i in range(20)],
        )
        await asyncio.sleep(SHORT_OUTAGE)
        await proxy.restore()
        back = time.monotonic()
        await wait_for(
            lambda: {f"RD-{i:03d}" for i in range(20)} <= _delivered(main), timeout=60, interval=0.5
        )
        took = time.monotonic() - back
        print(f"\nRedis down {SHORT_OUTAGE:g} s: 20/20 delivered {took:.1f} s after its return")

        # Evolution API's getBase64FromMediaMessage down (503) as long: notes without base64.
        gone = f"{evolution.url}/media/never-there"
        ids = [f"EV-{i:03d}" for i in range(15)]
        for mid in ids:
            evolution.add_media(mid, os.urandom(700))
        evolution.fail_next("getBase64", 1_000_000, status=503)
        await _publish(
            tuned,
            [audio_event("inst-x", mid, 10) for mid in ids]
            + [_missing_media("inst-x", "GONE-EV", gone)],
        )
        await wait_for(lambda: _holding(redis, keys, "evolution"), timeout=30, interval=0.2)
        await asyncio.sleep(SHORT_OUTAGE)
        assert not _delivered(main) & set(ids)
        evolution.recover("getBase64")
        back = time.monotonic()
        await wait_for(lambda: set(ids) <= _delivered(main), timeout=60, interval=0.5)
        took = time.monotonic() - back
        print(f"getBase64 down {SHORT_OUTAGE:g} s: 15/15 delivered {took:.1f} s after its return")
        await wait_for(lambda: _gone_letters(tuned, 1), timeout=30, interval=0.5)
        letters, delivery_letters = await _letters(tuned)
        assert delivery_letters == 0
        assert [(x.id, x.reason) for x in letters] == [("inst-x:GONE-EV", "download_failed")]
        await wait_for(lambda: _hold_events(monitor, "evolution") == ["started", "ended"])
        assert "started" in _hold_events(monitor, "redis")
        assert "ended" in _hold_events(monitor, "redis")
        assert not monitor.by_event("queue.error") or all(
            e["data"].get("messageId") == "GONE-EV" for e in monitor.by_event("queue.error")
        )
        # Stopped off this loop, which runs the proxy: blocking it left Redis hung, not reachable.
        for proc in procs:
            assert await asyncio.to_thread(proc.terminate) == 0, proc.output()[-2000:]
    await proxy.close()


async def test_sigterm_while_redis_hangs_exits_cleanly(
    settings: Settings, spawn: Spawn, redis: aioredis.Redis, keys: Keys
) -> None:
    """A Redis that accepts but never answers (hung, or partitioned after connecting) must not
    hold a worker's exit: every Redis step of its stop is bounded."""
    proxy = await _proxy_to(settings.redis_url, services.REDIS_PORT)
    async with _receivers(settings) as (main, monitor):
        tuned = _tuned(settings, main, monitor, redis_url=_through(proxy, settings.redis_url))
        procs = [spawn(["worker", role], tuned) for role in ("ingest", "delivery")]
        await wait_for(lambda: _count_workers(redis, keys, 2), timeout=30, interval=0.2)
        proxy.freeze()
        await asyncio.sleep(1.5)  # heartbeats (every 0.5 s) now wait on replies that never come
        started = time.monotonic()
        codes = await asyncio.gather(*(asyncio.to_thread(p.terminate) for p in procs))
        took = time.monotonic() - started
        for proc, code in zip(procs, codes, strict=True):
            assert code == 0, proc.output()[-2000:]
        assert took < 15, f"stopped in {took:.1f} s"
    proxy.thaw()
    await proxy.close()


async def _count_workers(redis: aioredis.Redis, keys: Keys, n: int) -> bool:
    return len(await workers(redis, keys)) >= n


async def _released(redis: aioredis.Redis, keys: Keys, dependency: str) -> bool:
    return not await _holding(redis, keys, dependency)


async def _gone_letters(settings: Settings, n: int) -> bool:
    letters, _ = await _letters(settings)
    return len(letters) >= n
