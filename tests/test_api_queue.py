"""Queue routes: stats, fleet orders, live rate limit, dead letters, the HTTP ingest webhook."""

from __future__ import annotations

from typing import Any

import aio_pika
import msgspec
import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from controlplane.app import create_app
from fila import topology
from fila.keys import Keys
from fila.models import RateLimitConfig
from fila.settings import Settings
from fila.stats import Counters
from tests.support import wait_for
from tests.test_controlplane_support import cp, migrated
from tests.test_ingest_support import audio_event, rabbit

__all__ = ["cp", "migrated"]


async def test_queue_stats_reads_the_real_queue_and_counters(
    cp: AsyncTestClient[Any], settings: Settings, redis: aioredis.Redis, keys: Keys
) -> None:
    async with rabbit(settings) as mq:
        for n in range(3):
            await mq.channel.default_exchange.publish(
                aio_pika.Message(b'{"n": %d}' % n, priority=1), routing_key=topology.GLOBAL_QUEUE
            )
    counters = Counters(redis, keys, settings.timezone)
    await counters.bump("qs-a", {"tooShort": 2, "tooLong": 1, "processed": 5, "delivered": 4})
    response = await cp.get("/queue/stats")
    assert response.status_code == 200
    stats = response.json()

    assert stats["queueSize"] == 3
    assert stats["processedToday"] == 4
    assert stats["audioFilterStats"] == {"tooShort": 2, "tooLong": 1, "processed": 5}
    limit = stats["rateLimitStatus"]
    assert {"tokens", "capacity", "refillRate"} <= set(limit)
    assert limit["capacity"] == 500 and limit["refillRate"] == "500/min"
    assert 0 <= limit["tokens"] <= 500


async def test_pause_resume_drain_publish_orders(
    cp: AsyncTestClient[Any], redis: aioredis.Redis, keys: Keys
) -> None:
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.control_channel)
    got: list[dict[str, Any]] = []

    async def received(n: int) -> bool:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message and message["type"] == "message":
            got.append(msgspec.json.decode(message["data"]))
        return len(got) >= n

    try:
        pause = (await cp.post("/queue/pause")).json()
        assert pause["success"] is True and isinstance(pause["seq"], int)
        assert await redis.exists(keys.paused)
        await wait_for(lambda: received(1))
        assert got[0]["kind"] == "pause" and got[0]["seq"] == pause["seq"]
        assert "role" not in got[0]

        resume = (await cp.post("/queue/resume", json={"role": "ingest"})).json()
        assert resume["seq"] > pause["seq"]
        assert not await redis.exists(keys.paused)
        await wait_for(lambda: received(2))
        assert (got[1]["kind"], got[1]["role"]) == ("resume", "ingest")

        drain = (await cp.post("/queue/drain", json={"role": "delivery"})).json()
        await wait_for(lambda: received(3))
        assert (got[2]["kind"], got[2]["role"], got[2]["seq"]) == (
            "drain",
            "delivery",
            drain["seq"],
        )
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_ratelimit_partial_change_is_stored_mirrored_and_survives_restart(
    cp: AsyncTestClient[Any], settings: Settings, redis: aioredis.Redis, keys: Keys
) -> None:
    before = (await cp.get("/ratelimit")).json()
    assert set(before) == {
        "capacity",
        "refillPerMinute",
        "policy",
        "reservePercent",
        "instanceCapacity",
        "activeWindowSeconds",
        "weights",
    }
    after = (await cp.put("/ratelimit", json={"capacity": 42, "policy": "defer"})).json()
    assert after == {**before, "capacity": 42, "policy": "defer"}
    mirrored = msgspec.json.decode(await redis.get(keys.config_ratelimit), type=RateLimitConfig)
    assert (mirrored.capacity, mirrored.policy) == (42, "defer")
    stats = (await cp.get("/queue/stats")).json()
    assert stats["rateLimitStatus"]["capacity"] == 42
    # The mirror is rebuilt from PostgreSQL by a fresh control plane.
    await redis.delete(keys.config_ratelimit)
    async with AsyncTestClient(app=create_app(settings)) as again:
        again.headers["apikey"] = settings.api_key
        assert (await again.get("/ratelimit")).json()["capacity"] == 42
    restored = msgspec.json.decode(await redis.get(keys.config_ratelimit), type=RateLimitConfig)
    assert restored.capacity == 42
    await cp.put("/ratelimit", json={"capacity": 500, "policy": "reject"})


async def test_fair_sharing_fields_and_weights_are_live_and_checked(
    cp: AsyncTestClient[Any], redis: aioredis.Redis, keys: Keys
) -> None:
    changed = await cp.put("/ratelimit", json={"reservePercent": 35, "activeWindowSeconds": 30})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["reservePercent"], changed.json()["activeWindowSeconds"]) == (35, 30)
    for body, field in (
        ({"reservePercent": 95}, "reservePercent"),
        ({"instanceRefillPerMinute": 20}, "instanceRefillPerMinute"),
        ({"activeWindowSeconds": 0}, "activeWindowSeconds"),
        ({"weights": {"x": 11}}, "weights.x"),
    ):
        refused = await cp.put("/ratelimit", json=body)
        assert (refused.status_code, refused.json()["field"]) == (400, field), refused.text
    assert (await cp.get("/instance/never/weight")).json() == {
        "instance": "never",
        "weight": 1,
        "priority": 1,
    }
    weighted = await cp.put("/instance/paying/weight", json={"weight": 3})
    assert weighted.json() == {"instance": "paying", "weight": 3, "priority": 3}
    for bad in (0, 11, "3", 2.5):
        refused = await cp.put("/instance/paying/weight", json={"weight": bad})
        assert (refused.status_code, refused.json()["field"]) == (400, "weight"), refused.text
    limits = (await cp.get("/ratelimit")).json()
    assert limits["weights"] == {"paying": 3} and limits["reservePercent"] == 35
    mirrored = msgspec.json.decode(await redis.get(keys.config_ratelimit), type=RateLimitConfig)
    assert mirrored.weights == {"paying": 3}
    await cp.put("/instance/paying/weight", json={"weight": 1})
    assert (await cp.get("/ratelimit")).json()["weights"] == {}
    await cp.put("/ratelimit", json={"reservePercent": 20, "activeWindowSeconds": 60})


async def test_a_rate_limit_stored_before_fair_sharing_is_migrated_not_refused(
    cp: AsyncTestClient[Any], settings: Settings
) -> None:
    """A row with the retired per-instance refill, then the committed migration run again."""
    import json

    import asyncpg

    from controlplane.piccolo_migrations import controlplane_2026_12_01t15_20_00_000000 as mig
    from tests.test_controlplane_support import run_migrations

    old = {
        "capacity": 321,
        "refillPerMinute": 300.0,
        "policy": "defer",
        "instanceCapacity": 7,
        "instanceRefillPerMinute": 7.0,
    }
    db = await asyncpg.connect(settings.database_url)
    try:
        await db.execute(
            "INSERT INTO config_entry (key, value, updated_at) VALUES ('ratelimit', $1, now())"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            json.dumps(old),
        )
        await db.execute("DELETE FROM migration WHERE name = $1", mig.ID)
        run_migrations(settings)
        stored = json.loads(
            await db.fetchval("SELECT value FROM config_entry WHERE key = 'ratelimit'")
        )
    finally:
        await db.close()
    assert stored == {k: v for k, v in old.items() if k != "instanceRefillPerMinute"}
    read = (await cp.get("/ratelimit")).json()
    assert (read["capacity"], read["policy"], read["instanceCapacity"]) == (321, "defer", 7)
    assert read["reservePercent"] == 20 and "instanceRefillPerMinute" not in read
    restore = {"capacity": 500, "refillPerMinute": 500, "policy": "reject"}
    restore["instanceCapacity"] = settings.rate_instance_capacity  # fleet tests read it
    await cp.put("/ratelimit", json=restore)


async def test_evolution_webhook_puts_the_raw_body_on_the_ingest_queue(
    cp: AsyncTestClient[Any], settings: Settings
) -> None:
    event = audio_event("http-a", "HTTP-1", 12)
    raw = msgspec.json.encode(event)
    first = await cp.post(
        "/webhook/evolution", content=raw, headers={"content-type": "application/json"}
    )
    assert first.status_code == 202, first.text
    assert first.json() == {"accepted": True, "id": "http-a:HTTP-1"}
    second = await cp.post(
        "/webhook/evolution/messages-upsert", json=audio_event("http-a", "HTTP-2", 4)
    )
    assert second.status_code == 202 and second.json()["id"] == "http-a:HTTP-2"
    other = await cp.post(
        "/webhook/evolution/connection-update",
        json={"event": "CONNECTION_UPDATE", "instance": "http-a", "data": {"state": "open"}},
    )
    assert other.status_code == 200 and other.json()["accepted"] is False
    assert "CONNECTION_UPDATE" in other.json()["reason"]
    async with rabbit(settings) as mq:
        messages = await mq.drain(settings.ingest_queue)
    assert [m.message_id for m in messages] == ["http-a:HTTP-1", "http-a:HTTP-2"]
    assert messages[0].body == raw
    assert all(m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT for m in messages)
    garbage = await cp.post("/webhook/evolution", content=b"{nope")
    assert garbage.status_code == 400 and garbage.json()["field"] == "body"


@pytest.mark.parametrize("queue", ["delivery", "ingest", "monitoring"])
async def test_dead_letters_browse_then_replay(
    cp: AsyncTestClient[Any], settings: Settings, queue: str
) -> None:
    dlq, target = {
        "delivery": (topology.GLOBAL_DLQ, topology.GLOBAL_QUEUE),
        "ingest": (topology.INGEST_DLQ, settings.ingest_queue),
        "monitoring": (topology.MONITORING_DLQ, topology.MONITORING_QUEUE),
    }[queue]
    async with rabbit(settings) as mq:
        for n, instance in enumerate(("dl-a", "dl-b", "dl-a")):
            await mq.channel.default_exchange.publish(
                aio_pika.Message(
                    msgspec.json.encode({"instance": instance, "n": n}),
                    message_id=f"{instance}:M{n}",
                    priority=3,
                    headers={
                        topology.H_REASON: "http_500",
                        topology.H_STAGE: queue,
                        topology.H_ATTEMPTS: 6,
                    },
                ),
                routing_key=dlq,
            )
        listed = (await cp.get("/queue/dead-letters", params={"queue": queue})).json()
        assert listed["count"] == 3 and len(listed["deadLetters"]) == 3
        assert listed["deadLetters"][0]["reason"] == "http_500"
        assert await mq.depth(dlq) == 3  # browsing consumed nothing
        replay = await cp.post(
            "/queue/dead-letters/replay", json={"queue": queue, "instance": "dl-a"}
        )
        assert replay.status_code == 200, replay.text
        assert replay.json() == {"replayed": 2, "remaining": 1}
        back = await mq.drain(target)
        assert sorted(m.message_id for m in back) == ["dl-a:M0", "dl-a:M2"]
        assert await mq.depth(dlq) == 1
    bad = await cp.get("/queue/dead-letters", params={"queue": "nowhere"})
    assert bad.status_code == 400 and bad.json()["field"] == "queue"
