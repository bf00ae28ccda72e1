"""Fila on a Sentinel-watched master (one replica, three sentinels, on a free port block for
the session): the pipeline basics, then the master killed with SIGKILL mid-stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from fila import redisconn
from fila.dev.redissentinel import LocalRedisSentinel
from fila.keys import Keys
from fila.settings import Settings
from simulator.receiver import Receiver
from tests.support import brought_up, wait_for
from tests.test_controlplane_support import migrated
from tests.test_ingest_support import audio_event, counters, noise, rabbit
from tests.test_redis_cluster import (
    Spawn,
    _fleet,
    apply_filter,
    hooked_control_plane,
    port_block,
)

__all__ = ["migrated"]

NOTES = 300
"""Voice notes of the failover run, offered at RATE a second (~12 s), all within the bucket."""
RATE = 25


@pytest.fixture(scope="module")
def local_sentinel(base_settings: Settings) -> Iterator[LocalRedisSentinel]:
    with (
        port_block(base_settings, 5) as ports,
        brought_up(LocalRedisSentinel(base_settings, ports)) as setup,
    ):
        yield setup


@pytest.fixture
async def on_sentinel(
    settings: Settings, local_sentinel: LocalRedisSentinel
) -> AsyncIterator[Settings]:
    local_sentinel.up(report=lambda _: None)  # whole again if an earlier test killed a node
    yield local_sentinel.settings(settings).replace(heartbeat_seconds=0.5)


@pytest.mark.usefixtures("migrated")
async def test_the_pipeline_and_a_master_failover_on_sentinel(
    on_sentinel: Settings, local_sentinel: LocalRedisSentinel, spawn: Spawn
) -> None:
    """Filters applied live, counters and /queue/stats as on one node; then kill -9 of the
    master mid-stream, its replica promoted by the sentinels: every note delivered, by id (none
    refused: the notes are within the default bucket, and a refusal is reported, not lost)."""
    keys = Keys(on_sentinel.redis_prefix)
    redis = redisconn.connect(on_sentinel)
    try:
        async with (
            Receiver(secret=on_sentinel.webhook_secret) as receiver,
            Receiver(secret=on_sentinel.webhook_secret) as monitor,
            rabbit(on_sentinel) as mq,
        ):
            hooks = {
                "principal": {"enabled": True, "url": receiver.url},
                "monitoramento": {"enabled": True, "url": monitor.url},
            }
            async with hooked_control_plane(spawn, on_sentinel, hooks) as (_, api):
                for role in ("ingest", "delivery"):
                    spawn(["worker", role], on_sentinel)
                await _fleet(redis, keys, 2)
                await apply_filter(api, redis, keys, "sn", 20, 7200, enabled=True)
                for i in range(5):
                    await mq.publish(audio_event("sn", f"S{i}", 10, data=noise(200)))
                    await mq.publish(audio_event("sn", f"L{i}", 30, data=noise(200)))
                await receiver.wait_for_count(5, timeout=60)

                async def counted() -> bool:
                    mine = await counters(redis, keys, "sn")
                    return (mine.get("tooShort"), mine.get("processed")) == (5, 5)

                await wait_for(counted, timeout=30)

                async def delivered_counted() -> bool:  # counted once the webhook answered
                    return (await api.get("/queue/stats")).json()["processedToday"] == 5

                await wait_for(delivered_counted, timeout=15)
                stats = (await api.get("/queue/stats")).json()
                assert stats["audioFilterStats"] == {"tooShort": 5, "tooLong": 0, "processed": 5}

                # The failover: notes flow while the master dies; the sentinels promote.
                old = local_sentinel.master()
                assert old is not None
                started = killed = time.monotonic()
                for i in range(NOTES):
                    if i == NOTES // 3:
                        local_sentinel.kill(old[1])
                        killed = time.monotonic()
                    await mq.publish(audio_event(f"fo-{i % 10}", f"N{i:04d}", 30, data=noise(200)))
                    await asyncio.sleep(max(0.0, started + (i + 1) / RATE - time.monotonic()))
                new = local_sentinel.master()
                assert new is not None and new != old, (old, new)
                sent = {f"N{i:04d}" for i in range(NOTES)}

                def delivered() -> set[str]:
                    return {d.json["data"]["key"]["id"] for d in receiver.accepted()} & sent

                def refused() -> set[str]:
                    return {
                        (e.get("data") or {}).get("messageId")
                        for e in monitor.by_event("queue.error")
                        if (e.get("data") or {}).get("error") == "Rate limit exceeded"
                    } & sent

                try:
                    await wait_for(lambda: delivered() | refused() == sent, timeout=90, interval=1)
                except AssertionError:
                    left = sorted(sent - delivered() - refused())
                    raise AssertionError(f"{len(left)} notes lost: {left[:5]}") from None
                assert not refused(), f"{len(refused())} refused: {sorted(refused())[:5]}"
                copies = sum(1 for d in receiver.accepted() if d.json["data"]["key"]["id"] in sent)
                print(
                    f"\nsentinel failover: master :{old[1]} killed at {NOTES // 3} notes, "
                    f":{new[1]} promoted; sent={NOTES} delivered={len(delivered())} lost=0 "
                    f"copies={copies} after {time.monotonic() - killed:.1f} s"
                )
                # Still one Redis to the processes: a change after the failover is applied.
                await apply_filter(api, redis, keys, "sn", 3, 7200, enabled=False)
    finally:
        await redis.aclose()
