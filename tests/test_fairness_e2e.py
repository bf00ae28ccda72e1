"""Fair sharing end to end: real ingest and delivery workers, RabbitMQ, Redis, S3, a receiver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec

from fila import topology
from fila.configstore import ConfigStore
from fila.keys import Keys
from fila.models import QueuedAudio, RateLimitConfig, WebhookConfig, WebhookTarget
from fila.settings import Settings
from simulator.receiver import Receiver
from tests.support import Proc, wait_for
from tests.test_ingest_support import audio_event, counters, noise, rabbit, workers

Spawn = Callable[..., Proc]


async def _workers(redis: Any, keys: Keys, n: int) -> None:
    async def ready() -> bool:
        return len(await workers(redis, keys)) == n

    await wait_for(ready, timeout=60)


async def test_a_burst_from_one_instance_is_all_admitted_and_delivered_with_the_defaults(
    settings: Settings, redis: Any, keys: Keys, spawn: Spawn
) -> None:
    """100 voice notes in 10 s from one instance, the rest idle: no refusal (it was 37 of 60)."""
    limits = await ConfigStore(redis, keys, settings).ratelimit()
    assert (limits.capacity, limits.refillPerMinute, limits.policy) == (500, 500, "reject")
    assert limits.instanceCapacity == 20
    async with Receiver(secret=settings.webhook_secret) as receiver, rabbit(settings) as mq:
        await ConfigStore(redis, keys, settings).set_webhook(
            WebhookConfig(principal=WebhookTarget(enabled=True, url=receiver.url))
        )
        spawn(["worker", "ingest"], settings)
        spawn(["worker", "delivery"], settings)
        await _workers(redis, keys, 2)
        for i in range(100):
            await mq.publish(audio_event("support-line", f"B{i:03d}", 10, data=noise(300)))
            await asyncio.sleep(0.1)
        got = await receiver.wait_for_count(100, timeout=90)
        ids = {d.json["data"]["key"]["id"] for d in got}
        assert ids == {f"B{i:03d}" for i in range(100)}
        mine = await counters(redis, keys, "support-line")
        assert mine.get("rateLimited", 0) == 0 and mine["processed"] == 100, mine


async def test_a_heavier_instance_overtakes_waiting_messages_on_global_messages(
    settings: Settings, redis: Any, keys: Keys, spawn: Spawn
) -> None:
    store = ConfigStore(redis, keys, settings)
    await store.set_ratelimit(RateLimitConfig(weights={"paying": 3}))
    async with rabbit(settings) as mq:
        spawn(["worker", "ingest"], settings)  # no delivery worker: messages wait in the queue
        await _workers(redis, keys, 1)
        for i in range(5):
            await mq.publish(audio_event("basic", f"L{i}", 10, data=noise(200)))

        async def queued(n: int) -> bool:
            return await mq.depth(topology.GLOBAL_QUEUE) == n

        await wait_for(lambda: queued(5), timeout=60)
        for i in range(5):
            await mq.publish(audio_event("paying", f"H{i}", 10, data=noise(200)))
        await wait_for(lambda: queued(10), timeout=60)
        taken = [
            msgspec.json.decode(m.body, type=QueuedAudio)
            for m in await mq.drain(topology.GLOBAL_QUEUE)
        ]
        assert [m.instance for m in taken] == ["paying"] * 5 + ["basic"] * 5
        assert [m.priority for m in taken] == [3] * 5 + [1] * 5
