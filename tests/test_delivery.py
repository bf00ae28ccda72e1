"""Delivery workers as real subprocesses, against RabbitMQ, Redis and a real HTTP receiver."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import msgspec
import pytest
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel
from standardwebhooks.webhooks import Webhook

from fila import deadletters, dlq, stats, topology
from fila.configstore import ConfigStore
from fila.keys import Keys
from fila.models import MessageKey, QueuedAudio, WebhookConfig, WebhookTarget, WorkerInfo
from fila.settings import Settings
from simulator.receiver import Receiver
from tests.conftest import ROOT
from tests.support import Proc, wait_for
from workers.webhook import Webhooks

Spawn = Callable[..., Proc]


def fast(settings: Settings, **changes: Any) -> Settings:
    """Short retry tiers and quick heartbeats so tests see every stage in seconds."""
    base: dict[str, Any] = {
        "delivery_retry_schedule": "0.2,0.2,0.5",
        "heartbeat_seconds": 0.2,
        "breaker_failures": 50,
        "breaker_probe_seconds": 1.0,
        "monitoring_flush_seconds": 0.3,
        "webhook_timeout_seconds": 10.0,
        "delivery_concurrency": 8,
    }
    return settings.replace(**{**base, **changes})


def audio(instance: str, n: int, received_at: float | None = None) -> QueuedAudio:
    mid = f"MSG{n:04d}"
    return QueuedAudio(
        id=f"{instance}:{mid}",
        instance=instance,
        key=MessageKey(remoteJid="5511999990000@s.whatsapp.net", id=mid, fromMe=False),
        message={"audioMessage": {"seconds": 12, "ptt": True, "mimetype": "audio/ogg"}},
        audioUrl=f"https://s3.example/bucket/audio_{n}_{instance}.ogg",
        audioDuration=12,
        mimeType="audio/ogg; codecs=opus",
        s3Key=f"audio_{n}_{instance}.ogg",
        priority=5,
        receivedAt=received_at if received_at is not None else time.time() * 1000,
        apikey="instance-api-key",
    )


def contract_body(item: QueuedAudio, settings: Settings) -> dict[str, Any]:
    return {
        "event": "messages.upsert",
        "instance": item.instance,
        "data": {
            # Written out, not encoded by the same model: fromMe must be there even when false.
            "key": {"remoteJid": item.key.remoteJid, "fromMe": item.key.fromMe, "id": item.key.id},
            "message": item.message,
            "audioUrl": item.audioUrl,
            "audioDuration": item.audioDuration,
            "mimeType": item.mimeType,
        },
        "server_url": settings.server_url,
        "apikey": item.apikey,
    }


@pytest.fixture
async def channel(settings: Settings) -> AsyncIterator[AbstractChannel]:
    connection = await topology.connect(settings)
    chan = await connection.channel()
    await topology.declare_global(chan, settings)
    await topology.declare_monitoring(chan, settings)
    yield chan
    await connection.close()


async def publish(channel: AbstractChannel, *items: QueuedAudio) -> None:
    for item in items:
        await channel.default_exchange.publish(
            aio_pika.Message(
                msgspec.json.encode(item),
                message_id=item.id,
                priority=item.priority,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=topology.GLOBAL_QUEUE,
        )


async def counts(redis: aioredis.Redis, keys: Keys, settings: Settings) -> dict[str, int]:
    return await stats.Counters(redis, keys, settings.timezone).global_counts()


async def in_flight(redis: aioredis.Redis, keys: Keys) -> bool:
    """Some delivery worker says (heartbeat) it holds a message."""
    ids = [w.decode() for w in await redis.zrange(keys.workers, 0, -1) if isinstance(w, bytes)]
    for raw in await redis.mget([keys.worker(w) for w in ids]) if ids else []:
        if raw and msgspec.json.decode(raw, type=WorkerInfo).inFlight > 0:
            return True
    return False


async def test_message_arrives_with_contract_body_and_valid_signature(
    settings: Settings,
    spawn: Spawn,
    channel: AbstractChannel,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    async with Receiver(secret=settings.webhook_secret) as receiver:
        await ConfigStore(redis, keys, settings).set_webhook(
            WebhookConfig(
                principal=WebhookTarget(enabled=True, url=receiver.url),
                webhookByEvents=True,
                headers={"x-tenant": "acme"},
            )
        )
        worker = spawn(["worker", "delivery"], fast(settings))
        item = audio("inst-a", 1)
        await publish(channel, item)

        [delivery] = await receiver.wait_for_count(1, timeout=60)
        assert delivery.path == "/messages-upsert"
        assert delivery.json == contract_body(item, settings)
        verified = Webhook(settings.webhook_secret).verify(delivery.body, delivery.headers)
        assert verified == contract_body(item, settings)
        assert delivery.verified
        assert delivery.headers["webhook-id"] == item.id
        assert delivery.headers["x-tenant"] == "acme"

        async def delivered() -> bool:
            return (await counts(redis, keys, settings))[stats.DELIVERED] == 1

        await wait_for(delivered, timeout=30)
        assert (await stats.read_latency(redis, keys, "end_to_end"))[2] == 1
        assert await topology.queue_depth(channel, topology.GLOBAL_QUEUE) == 0
        assert worker.popen.poll() is None, worker.output()


async def test_500_twice_then_200_is_delivered_on_the_third_try(
    settings: Settings,
    spawn: Spawn,
    channel: AbstractChannel,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    async with Receiver(secret=settings.webhook_secret) as receiver:
        receiver.fail_with(500, times=2)
        spawn(["worker", "delivery"], fast(settings, webhook_principal_url=receiver.url))
        item = audio("inst-b", 2)
        await publish(channel, item)

        await wait_for(lambda: receiver.accepted(), timeout=60)
        assert [d.status for d in receiver.deliveries] == [500, 500, 200]
        assert {d.webhook_id for d in receiver.deliveries} == {item.id}
        assert receiver.deliveries[-1].json == contract_body(item, settings)

        async def settled() -> bool:
            c = await counts(redis, keys, settings)
            return c[stats.DELIVERED] == 1 and c[stats.DELIVERY_RETRIED] == 2

        await wait_for(settled, timeout=30)
        assert await dlq.browse(channel, topology.GLOBAL_DLQ) == []


async def test_a_breaker_another_worker_opened_stops_this_one_within_its_freshness(
    settings: Settings,
    spawn: Spawn,
    channel: AbstractChannel,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    """A worker reuses a "closed" answer for CLOSED_FRESH_SECONDS only: an opening written by
    another worker holds its next messages in RabbitMQ, and closing it lets them through."""
    from workers.breaker import CLOSED_FRESH_SECONDS

    async with Receiver(secret=settings.webhook_secret) as receiver:
        spawn(["worker", "delivery"], fast(settings, webhook_principal_url=receiver.url))
        await publish(channel, audio("inst-o", 0))
        await wait_for(lambda: len(receiver.accepted()) == 1, timeout=60)

        probe_at = time.time() + CLOSED_FRESH_SECONDS + 8.0  # well past the checks below
        opened = {"state": "open", "failures": 50, "openedAt": time.time(), "nextProbeAt": probe_at}
        await redis.hset(keys.breakers, receiver.url, msgspec.json.encode(opened))
        await asyncio.sleep(CLOSED_FRESH_SECONDS + 0.25)
        held = [audio("inst-o", n) for n in range(1, 4)]
        await publish(channel, *held)
        await asyncio.sleep(1.5)
        assert len(receiver.deliveries) == 1, [d.webhook_id for d in receiver.deliveries]
        assert await topology.queue_depth(channel, topology.GLOBAL_QUEUE) == 3

        # At nextProbeAt one probe goes out, succeeds and closes it: the rest follow.
        await wait_for(lambda: len(receiver.accepted()) == 4, timeout=60)
        assert receiver.accepted()[1].received_at >= probe_at - 0.1
        assert {d.webhook_id for d in receiver.accepted()[1:]} == {i.id for i in held}


async def test_429_retry_after_is_honoured(
    settings: Settings, spawn: Spawn, channel: AbstractChannel
) -> None:
    async with Receiver(secret=settings.webhook_secret) as receiver:
        # Retry-After 2 s is past every tier of "0.2,0.2,0.5": waited in whole seconds.
        receiver.fail_with(429, times=1, retry_after=2)
        spawn(["worker", "delivery"], fast(settings, webhook_principal_url=receiver.url))
        item = audio("inst-j", 10)
        await publish(channel, item)

        await wait_for(lambda: receiver.accepted(), timeout=60)
        first, second = receiver.deliveries
        assert (first.status, second.status) == (429, 200)
        # A lower bound only: the delay queue cannot hand the message back any sooner.
        assert second.received_at - first.received_at >= 1.9


async def _cli_replay(settings: Settings, *args: str) -> str:
    env = {**os.environ, **settings.to_env()}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fila",
        "dlq",
        *args,
        env=env,
        cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def test_400_goes_to_dead_letters_and_replay_delivers_it(
    settings: Settings,
    spawn: Spawn,
    channel: AbstractChannel,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    async with (
        Receiver(secret=settings.webhook_secret) as receiver,
        Receiver(secret=settings.webhook_secret) as monitor,
    ):
        receiver.fail_with(400, times=2)
        fleet_settings = fast(
            settings,
            webhook_principal_url=receiver.url,
            webhook_monitoring_url=monitor.url,
        )
        spawn(["worker", "delivery"], fleet_settings)
        first, second = audio("inst-c", 3), audio("inst-d", 4)
        await publish(channel, first)
        await receiver.wait_for_count(1, timeout=60)
        await publish(channel, second)

        async def both_dead() -> bool:
            return len(await dlq.browse(channel, topology.GLOBAL_DLQ)) == 2

        await wait_for(both_dead, timeout=60)
        assert [d.status for d in receiver.deliveries] == [400, 400]
        letters = await dlq.browse(channel, topology.GLOBAL_DLQ)
        assert [x.id for x in letters] == [first.id, second.id]
        for letter in letters:
            assert (letter.reason, letter.statusCode, letter.attempts, letter.stage) == (
                "rejected: HTTP 400",
                400,
                1,
                "delivery",
            )
            assert letter.response and '"received":false' in letter.response.replace(" ", "")

        # queue.error reaches the monitoring receiver with the contract fields.
        await wait_for(lambda: len(monitor.by_event("queue.error")) == 2, timeout=60)
        errors = sorted(monitor.by_event("queue.error"), key=lambda e: e["instance"])
        assert [e["instance"] for e in errors] == ["inst-c", "inst-d"]
        for err in errors:
            assert set(err) == {"event", "timestamp", "instance", "data", "server_url"}
            assert err["server_url"] == settings.server_url
            assert err["data"]["statusCode"] == 400
            assert err["data"]["reason"] == "rejected: HTTP 400"
            assert err["data"]["error"] == "Delivery failed: rejected: HTTP 400"
        failed = (await counts(redis, keys, settings))[stats.DELIVERY_FAILED]
        assert failed == 2

        # Replay one through the function, the other through the CLI.
        result = await dlq.replay(channel, topology.GLOBAL_DLQ, instance="inst-c")
        assert (result.replayed, result.remaining) == (1, 1)
        await wait_for(lambda: len(receiver.accepted()) == 1, timeout=60)
        out = await _cli_replay(fleet_settings, "replay", "--instance", "inst-d")
        assert "replayed 1" in out
        await wait_for(lambda: len(receiver.accepted()) == 2, timeout=60)
        assert sorted(d.webhook_id or "" for d in receiver.accepted()) == [first.id, second.id]
        assert await dlq.browse(channel, topology.GLOBAL_DLQ) == []


async def test_private_target_is_refused_at_connect_time_when_blocked(
    settings: Settings,
    spawn: Spawn,
    channel: AbstractChannel,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    """A target stored before the block (or whose DNS moved since) is refused by the worker."""
    async with Receiver(secret=settings.webhook_secret) as receiver:
        host_url = receiver.url.replace("127.0.0.1", "localhost")
        await ConfigStore(redis, keys, settings).set_webhook(
            WebhookConfig(principal=WebhookTarget(enabled=True, url=host_url))
        )
        spawn(["worker", "delivery"], fast(settings, webhook_block_private=True))
        item = audio("inst-private", 40)
        await publish(channel, item)

        async def dead() -> list[deadletters.DeadLetter]:
            return await dlq.browse(channel, topology.GLOBAL_DLQ)

        await wait_for(dead, timeout=60)
        [letter] = await dead()
        assert letter.id == item.id and letter.attempts == 1
        assert letter.reason.startswith("blocked: localhost resolves to private address"), letter
        assert receiver.deliveries == []
        assert (await counts(redis, keys, settings))[stats.DELIVERY_FAILED] == 1


async def test_public_target_is_not_blocked(settings: Settings, redis: aioredis.Redis) -> None:
    """The guard refuses private addresses only: a global one is tried, whatever answers."""
    guarded = settings.replace(webhook_block_private=True, webhook_timeout_seconds=2.0)
    hooks = Webhooks(guarded, ConfigStore(redis, Keys(settings.redis_prefix), guarded))
    try:
        public = await hooks.post("http://93.184.215.14:9/", b"{}", "id-1", {})
        private = await hooks.post("http://10.1.2.3:9/", b"{}", "id-2", {})
    finally:
        await hooks.aclose()
    assert public.blocked is None
    assert private.blocked == "10.1.2.3 resolves to private address 10.1.2.3"


async def test_receiver_down_for_a_while_loses_nothing(
    settings: Settings,
    spawn: Spawn,
    channel: AbstractChannel,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    async with Receiver(secret=settings.webhook_secret) as receiver:
        await receiver.go_down()
        # Two retries only: the outage outlasts them, yet the circuit breaker keeps every
        # message waiting in RabbitMQ (failed probes do not use up a message's attempts).
        spawn(
            ["worker", "delivery"],
            fast(
                settings,
                webhook_principal_url=receiver.url,
                delivery_retry_schedule="0.2,0.2",
                breaker_failures=3,
                breaker_probe_seconds=0.2,
            ),
        )
        items = [audio("inst-e", n) for n in range(10)]
        await publish(channel, *items)

        async def outlasted_every_attempt() -> bool:
            # 10 messages x 3 attempts = 30 failures would exhaust them all; past that,
            # only failed probes that spare the messages can keep counting.
            raw = await redis.hget(keys.breakers, receiver.url)
            return raw is not None and msgspec.json.decode(raw)["failures"] >= 36

        await wait_for(outlasted_every_attempt, timeout=120)
        assert await dlq.browse(channel, topology.GLOBAL_DLQ) == []
        await receiver.come_up()

        await wait_for(lambda: len({d.webhook_id for d in receiver.accepted()}) == 10, 90)
        assert {d.webhook_id for d in receiver.accepted()} == {i.id for i in items}
        assert all(d.verified for d in receiver.accepted())

        async def closed() -> bool:
            raw = await redis.hget(keys.breakers, receiver.url)
            return raw is not None and msgspec.json.decode(raw)["state"] == "closed"

        await wait_for(closed, timeout=30)
        assert await dlq.browse(channel, topology.GLOBAL_DLQ) == []
        assert await topology.queue_depth(channel, topology.GLOBAL_QUEUE) == 0


async def test_kill_9_mid_post_delivers_again_with_same_id(
    settings: Settings,
    spawn: Spawn,
    channel: AbstractChannel,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    async with Receiver(secret=settings.webhook_secret) as receiver:
        receiver.set_latency(8.0)
        fleet_settings = fast(settings, webhook_principal_url=receiver.url)
        first = spawn(["worker", "delivery"], fleet_settings)
        item = audio("inst-f", 6)
        await publish(channel, item)

        await wait_for(lambda: len(receiver.arrivals) == 1, timeout=60)  # the POST is out
        first.kill()
        receiver.set_latency(0)
        spawn(["worker", "delivery"], fleet_settings)

        # Only the second worker can count a delivery: the first died before any answer.
        async def delivered_again() -> bool:
            return (await counts(redis, keys, settings))[stats.DELIVERED] == 1

        await wait_for(delivered_again, timeout=90)
        assert receiver.accepted()
        # The killed worker's POST and the second worker's: two POSTs, one id.
        assert receiver.arrivals == [item.id, item.id]
        assert {d.webhook_id for d in receiver.deliveries} == {item.id}
        assert all(d.json == contract_body(item, settings) for d in receiver.deliveries)
        assert await topology.queue_depth(channel, topology.GLOBAL_QUEUE) == 0
        assert await dlq.browse(channel, topology.GLOBAL_DLQ) == []


async def test_no_main_webhook_holds_messages_and_expiry_is_reported(
    settings: Settings,
    spawn: Spawn,
    channel: AbstractChannel,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    async with (
        Receiver(secret=settings.webhook_secret) as receiver,
        Receiver(secret=settings.webhook_secret) as monitor,
    ):
        worker = spawn(["worker", "delivery"], fast(settings, webhook_monitoring_url=monitor.url))
        await wait_for(lambda: redis.zcard(keys.workers), timeout=60)
        waiting, expiring = audio("inst-g", 7), audio("inst-g", 8)
        await publish(channel, waiting)
        await wait_for(lambda: "deliveries held" in worker.output(), timeout=60)
        # A message whose TTL runs out is dead-lettered by RabbitMQ and reported.
        await channel.default_exchange.publish(
            aio_pika.Message(msgspec.json.encode(expiring), message_id=expiring.id, expiration=1),
            routing_key=topology.GLOBAL_QUEUE,
        )
        await wait_for(lambda: monitor.by_event("queue.error"), timeout=60)
        [error] = monitor.by_event("queue.error")
        assert error["instance"] == "inst-g"
        assert (error["data"]["reason"], error["data"]["messageId"]) == ("expired", expiring.id)
        assert error["data"]["error"] == "Delivery failed: expired"
        [letter] = await dlq.browse(channel, topology.GLOBAL_DLQ)
        assert (letter.id, letter.reason) == (expiring.id, "expired")
        assert receiver.deliveries == []

        # The control plane configures the main webhook: the held message goes out.
        store = ConfigStore(redis, keys, settings)
        await store.set_webhook(
            WebhookConfig(principal=WebhookTarget(enabled=True, url=receiver.url))
        )
        await wait_for(lambda: listening(redis, keys), timeout=60)
        await store.announce("config", scope="webhook")
        await wait_for(lambda: receiver.accepted(), timeout=60)
        assert [d.webhook_id for d in receiver.accepted()] == [waiting.id]


async def test_sigterm_finishes_the_post_in_flight(
    settings: Settings,
    spawn: Spawn,
    channel: AbstractChannel,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    async with (
        Receiver(secret=settings.webhook_secret) as receiver,
        Receiver(secret=settings.webhook_secret) as monitor,
    ):
        await monitor.go_down()  # monitoring trouble must not hold deliveries back
        receiver.set_latency(2.0)
        worker = spawn(
            ["worker", "delivery"],
            fast(settings, webhook_principal_url=receiver.url, webhook_monitoring_url=monitor.url),
        )
        item = audio("inst-h", 9)
        await publish(channel, item)

        await wait_for(lambda: in_flight(redis, keys), timeout=60)
        code = await asyncio.to_thread(worker.terminate, 60)
        assert code == 0, worker.output()
        assert [(d.webhook_id, d.status) for d in receiver.deliveries] == [(item.id, 200)]
        assert await topology.queue_depth(channel, topology.GLOBAL_QUEUE) == 0
        assert (await counts(redis, keys, settings))[stats.DELIVERED] == 1


async def consumers(channel: AbstractChannel) -> int:
    return (await topology.queue_counts(channel, topology.GLOBAL_QUEUE))[1]


async def test_pause_resume_and_concurrent_posts(
    settings: Settings,
    spawn: Spawn,
    channel: AbstractChannel,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    async with Receiver(secret=settings.webhook_secret) as receiver:
        spawn(
            ["worker", "delivery"],
            fast(settings, webhook_principal_url=receiver.url, delivery_concurrency=4),
        )
        await wait_for(lambda: consumers(channel), timeout=60)
        await wait_for(lambda: listening(redis, keys), timeout=60)
        store = ConfigStore(redis, keys, settings)
        await store.announce("pause", role="delivery")
        await wait_for(lambda: _no(consumers(channel)), timeout=60)
        items = [audio("inst-i", n) for n in range(8)]
        await publish(channel, *items)
        assert await topology.queue_depth(channel, topology.GLOBAL_QUEUE) == 8

        # Resumed with a slow receiver: four POSTs (the configured concurrency) at once.
        receiver.set_latency(1.5)

        async def four_in_flight() -> bool:
            ids = [
                w.decode() for w in await redis.zrange(keys.workers, 0, -1) if isinstance(w, bytes)
            ]
            raws = [r for r in await redis.mget([keys.worker(w) for w in ids]) if r]
            return any(msgspec.json.decode(r, type=WorkerInfo).inFlight == 4 for r in raws)

        await store.announce("resume", role="delivery")
        await wait_for(four_in_flight, timeout=60, interval=0.02)
        await wait_for(lambda: len(receiver.accepted()) == 8, timeout=60)
        assert sorted(d.webhook_id or "" for d in receiver.accepted()) == [i.id for i in items]


async def listening(redis: aioredis.Redis, keys: Keys) -> bool:
    """A worker is subscribed to the control channel (so a control message reaches it)."""
    [(_, subscribers)] = await redis.pubsub_numsub(keys.control_channel)
    return int(subscribers) > 0


async def _no(count: Any) -> bool:
    return not await count


async def test_bad_body_is_dead_lettered_not_lost(
    settings: Settings, spawn: Spawn, channel: AbstractChannel
) -> None:
    async with Receiver(secret=settings.webhook_secret) as receiver:
        spawn(["worker", "delivery"], fast(settings, webhook_principal_url=receiver.url))
        await channel.default_exchange.publish(
            aio_pika.Message(b'{"id": "x:1", "instance": 42}', message_id="x:1"),
            routing_key=topology.GLOBAL_QUEUE,
        )
        await publish(channel, good := audio("inst-k", 11))

        await wait_for(lambda: receiver.accepted(), timeout=60)
        assert [d.webhook_id for d in receiver.deliveries] == [good.id]

        async def dead() -> list[deadletters.DeadLetter]:
            return await dlq.browse(channel, topology.GLOBAL_DLQ)

        await wait_for(dead, timeout=60)
        [letter] = await dead()
        assert letter.id == "x:1" and letter.reason.startswith("invalid body")
        assert letter.body == {"id": "x:1", "instance": 42}


async def test_worker_started_under_a_fleet_pause_takes_nothing(
    settings: Settings,
    spawn: Spawn,
    channel: AbstractChannel,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    async with Receiver(secret=settings.webhook_secret) as receiver:
        await redis.set(keys.paused, "1")
        item = audio("inst-l", 12)
        await publish(channel, item)
        spawn(["worker", "delivery"], fast(settings, webhook_principal_url=receiver.url))
        await wait_for(lambda: listening(redis, keys), timeout=60)
        assert await topology.queue_counts(channel, topology.GLOBAL_QUEUE) == (1, 0)

        await redis.delete(keys.paused)
        await ConfigStore(redis, keys, settings).announce("resume")
        await wait_for(lambda: receiver.accepted(), timeout=60)
        assert {d.webhook_id for d in receiver.deliveries} == {item.id}
