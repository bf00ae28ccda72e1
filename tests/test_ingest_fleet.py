"""Ingest workers as a fleet: shared token bucket, live config, kill -9 and SIGTERM."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import msgspec

from fila import topology
from fila.audiofilter import AudioFilter, EmergencyFilter
from fila.configstore import ConfigStore
from fila.dev import services
from fila.keys import Keys
from fila.models import MonitoringEvent, QueuedAudio, RateLimitConfig, RatePolicy
from fila.settings import Settings
from simulator.evolution import EvolutionStub
from tests.faults import TcpProxy
from tests.support import Proc, wait_for
from tests.test_ingest_support import (
    audio_event,
    counters,
    noise,
    rabbit,
    s3_client,
    s3_get,
    s3_objects,
    workers,
)


async def _fleet(redis: Any, keys: Keys, n: int) -> list[dict[str, Any]]:
    async def ready() -> bool:
        return len(await workers(redis, keys)) == n

    await wait_for(ready, timeout=60)
    return await workers(redis, keys)


async def _total(redis: Any, keys: Keys, fields: tuple[str, ...], n: int) -> bool:
    c = await counters(redis, keys)
    return sum(c.get(f, 0) for f in fields) == n


async def _set_bucket(
    store: ConfigStore, capacity: int, per_second: float, policy: RatePolicy
) -> None:
    """The shared bucket: `capacity` tokens, `per_second` back, no instance limit in effect."""
    await store.set_ratelimit(
        RateLimitConfig(
            capacity=capacity,
            refillPerMinute=per_second * 60,
            policy=policy,
            instanceCapacity=1000,
        )
    )


async def _two_workers(
    spawn: Callable[..., Proc], settings: Settings, redis: Any, keys: Keys, **env: str
) -> None:
    """Two ingest workers (their `env` added), once both are in the fleet."""
    for _ in range(2):
        spawn(["worker", "ingest"], settings, **env)
    await _fleet(redis, keys, 2)


def _by_id(infos: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in infos}


async def test_two_workers_share_the_bucket_and_follow_live_config(
    settings: Settings, redis: Any, keys: Keys, spawn: Callable[..., Proc]
) -> None:
    store = ConfigStore(redis, keys, settings)
    capacity, per_second = 8, 0.1
    await _set_bucket(store, capacity, per_second, "reject")
    async with rabbit(settings) as mq:
        await _two_workers(spawn, settings, redis, keys, FILA_INGEST_CONCURRENCY="8")
        started = time.monotonic()
        for i in range(40):
            await mq.publish(audio_event(f"burst-{i % 5}", f"B{i}", 10, data=noise(500)))
        await wait_for(lambda: _total(redis, keys, ("processed", "rateLimited"), 40), timeout=60)
        elapsed = time.monotonic() - started
        glob = await counters(redis, keys)
        assert capacity <= glob["processed"] <= capacity + per_second * elapsed
        assert glob["rateLimited"] == 40 - glob["processed"]
        assert await mq.depth(topology.GLOBAL_QUEUE) == glob["processed"]

        async def errors_sent() -> bool:
            return await mq.depth(topology.MONITORING_QUEUE) == glob["rateLimited"]

        await wait_for(errors_sent, timeout=30)
        errors = [
            msgspec.json.decode(m.body, type=MonitoringEvent)
            for m in await mq.drain(topology.MONITORING_QUEUE)
        ]
        assert {(e.event, e.data["error"]) for e in errors} == {
            ("queue.error", "Rate limit exceeded")
        }
        assert all(e.instance and e.instance.startswith("burst-") for e in errors)

        # A live rate-limit change: no more refusals, without a restart.
        await store.set_ratelimit(RateLimitConfig(capacity=10000, refillPerMinute=600000))
        sent = await store.announce("config", scope="ratelimit")
        # Both processes handle (and so cache the filter of) instance flt.
        await _flt_through_both(mq, redis, keys, sent.seq, "F", 20, "processed")
        # Same instance, same millisecond, two processes: still one object per event.
        assert len(await s3_objects(settings)) == (await counters(redis, keys))["processed"]

        # A filter change through ConfigStore + announce reaches both processes.
        await store.set_filter(
            "flt", AudioFilter(minDurationSeconds=30, maxDurationSeconds=600, enabled=True)
        )
        sent = await store.announce("config", scope="filters", instance="flt")
        await _flt_through_both(mq, redis, keys, sent.seq, "G", 20, "tooShort")
        assert (await counters(redis, keys, "flt"))["processed"] == 20

        # The emergency filter overrides every instance's own, on both processes.
        await store.set_emergency(
            EmergencyFilter(enabled=True, minDurationSeconds=1, maxDurationSeconds=5)
        )
        sent = await store.announce("config", scope="emergency")
        await _flt_through_both(mq, redis, keys, sent.seq, "E", 10, "tooLong")
        assert (await counters(redis, keys, "flt"))["tooShort"] == 20


async def _applied(redis: Any, keys: Keys, seq: int, n: int = 2) -> None:
    async def done() -> bool:
        infos = await workers(redis, keys)
        return len(infos) == n and all(i["appliedSeq"] >= seq for i in infos)

    await wait_for(done, timeout=30)


async def _both_moved(redis: Any, keys: Keys, before: dict[str, dict[str, Any]]) -> None:
    async def moved() -> bool:
        now = _by_id(await workers(redis, keys))
        return all(now[k]["processed"] > before[k]["processed"] for k in before)

    await wait_for(moved, timeout=30)


async def _flt_through_both(
    mq: Any, redis: Any, keys: Keys, seq: int, prefix: str, n: int, field: str
) -> None:
    """Once both workers applied change `seq`: `n` events of instance flt (ids `prefix`0…)
    counted under `field`, and both processes took some."""
    await _applied(redis, keys, seq)
    before = _by_id(await workers(redis, keys))
    for i in range(n):
        await mq.publish(audio_event("flt", f"{prefix}{i}", 10, data=noise(300)))
    await wait_for(lambda: _count_for(redis, keys, "flt", field, n), timeout=60)
    await _both_moved(redis, keys, before)


async def _count_for(redis: Any, keys: Keys, instance: str, field: str, n: int) -> bool:
    return (await counters(redis, keys, instance)).get(field, 0) == n


async def test_defer_holds_events_in_rabbitmq_until_tokens_return(
    settings: Settings, redis: Any, keys: Keys, spawn: Callable[..., Proc]
) -> None:
    capacity, per_second = 5, 2.0
    await _set_bucket(ConfigStore(redis, keys, settings), capacity, per_second, "defer")
    async with rabbit(settings) as mq:
        await _two_workers(spawn, settings, redis, keys)
        started = time.monotonic()
        for i in range(20):
            await mq.publish(audio_event(f"d-{i % 3}", f"D{i}", 10, data=noise(400)))
        await wait_for(lambda: _total(redis, keys, ("processed",), 20), timeout=90)
        elapsed = time.monotonic() - started
        glob = await counters(redis, keys)
        assert glob["processed"] <= capacity + per_second * elapsed
        assert glob["deferred"] >= 1
        assert glob.get("rateLimited", 0) == 0 and glob.get("ingestFailed", 0) == 0
        assert glob["received"] == 20  # a deferred event is not counted as received again
        queued = await mq.drain(topology.GLOBAL_QUEUE)
        assert sorted(m.message_id or "" for m in queued) == sorted(
            f"d-{i % 3}:D{i}" for i in range(20)
        )
        assert len(await s3_objects(settings)) == 20


async def test_kill_9_mid_message_loses_nothing(
    settings: Settings, redis: Any, keys: Keys, spawn: Callable[..., Proc]
) -> None:
    audio = noise(30_000)
    async with EvolutionStub(api_key=settings.evolution_api_key) as stub, rabbit(settings) as mq:
        settings = settings.replace(evolution_url=stub.url)
        stub.add_media("K1", audio, "audio/ogg; codecs=opus")
        stub.set_latency("getBase64", 8.0)
        first = spawn(["worker", "ingest"], settings)
        await _fleet(redis, keys, 1)
        await mq.publish(audio_event("kill", "K1", 10))
        await stub.wait_for_calls("getBase64", 1, timeout=30)
        first.kill()
        # Unacked, so RabbitMQ puts it back once the connection is gone.
        await wait_for(lambda: _ready(mq, settings.ingest_queue, 1), timeout=30)
        assert (await counters(redis, keys)).get("processed", 0) == 0
        stub.set_latency("getBase64", 0.0)
        spawn(["worker", "ingest"], settings)
        await wait_for(lambda: _total(redis, keys, ("processed",), 1), timeout=60)
        queued = await mq.drain(topology.GLOBAL_QUEUE)
        assert [m.message_id for m in queued] == ["kill:K1"]
        item = msgspec.json.decode(queued[0].body, type=QueuedAudio)
        assert (await s3_get(settings, item.s3Key))[0] == audio
        assert list(await s3_objects(settings)) == [item.s3Key]


async def _ready(mq: Any, queue: str, n: int) -> bool:
    return bool(await mq.depth(queue) == n)


async def test_sigterm_finishes_what_it_holds_and_exits_0(
    settings: Settings, redis: Any, keys: Keys, spawn: Callable[..., Proc]
) -> None:
    async with EvolutionStub(api_key=settings.evolution_api_key) as stub, rabbit(settings) as mq:
        settings = settings.replace(evolution_url=stub.url)
        for i in range(3):
            stub.add_media(f"T{i}", noise(1000 + i), "audio/ogg; codecs=opus")
        stub.set_latency("getBase64", 2.0)
        proc = spawn(["worker", "ingest"], settings)
        await _fleet(redis, keys, 1)
        for i in range(3):
            await mq.publish(audio_event("term", f"T{i}", 10))
        await stub.wait_for_calls("getBase64", 3, timeout=30)
        # terminate() blocks: run it off the loop so the stub (in this loop) keeps answering.
        assert await asyncio.to_thread(proc.terminate, 60) == 0
        assert (await counters(redis, keys))["processed"] == 3
        assert await mq.depth(topology.GLOBAL_QUEUE) == 3
        assert await mq.depth(settings.ingest_queue) == 0
        assert await workers(redis, keys) == []  # it left the fleet


async def test_s3_down_is_held_not_dead_lettered(
    settings: Settings, redis: Any, keys: Keys, spawn: Callable[..., Proc]
) -> None:
    """S3 gone past the whole retry ladder: the event waits in RabbitMQ, no attempt spent."""
    settings = settings.replace(s3_endpoint_url="http://127.0.0.1:9", ingest_max_attempts=2)
    async with rabbit(settings) as mq:
        worker = spawn(["worker", "ingest"], settings)
        await _fleet(redis, keys, 1)
        await mq.publish(audio_event("s3", "S1", 10, data=noise(200)))

        async def holding() -> bool:
            [info] = await workers(redis, keys)
            return "s3" in str(info.get("holding", ""))

        await wait_for(holding, timeout=60)
        await asyncio.sleep(8)  # the old ladder (1 s, then dead letter at 2 attempts) is long past
        assert await mq.depth(topology.INGEST_DLQ) == 0, worker.output()[-2000:]
        assert (await counters(redis, keys)).get("ingestFailed", 0) == 0
        assert await mq.depth(topology.GLOBAL_QUEUE) == 0
        assert "holding: dependency unreachable" in worker.output()


async def test_a_missed_fleet_pause_and_resume_are_caught_up(
    settings: Settings, redis: Any, keys: Keys, spawn: Callable[..., Proc]
) -> None:
    """The control plane's steps with the pub/sub message lost: mark, sequence, no message."""
    settings = settings.replace(heartbeat_seconds=0.2)
    async with rabbit(settings) as mq:
        worker = spawn(["worker", "ingest"], settings.replace(log_level="INFO"))
        await _fleet(redis, keys, 1)

        async def state(expected: str, consumers: int) -> bool:
            [info] = await workers(redis, keys)
            queue = await mq.channel.declare_queue(settings.ingest_queue, passive=True)
            count = queue.declaration_result.consumer_count
            return bool(info["state"] == expected and count == consumers)

        await redis.set(keys.paused, "1")
        await redis.incr(keys.config_seq)  # the pause message itself never arrives
        await wait_for(lambda: state("paused", 0), timeout=30)
        await mq.publish(audio_event("missed", "M1", 10, data=noise(100)))
        await redis.delete(keys.paused)
        await redis.incr(keys.config_seq)  # nor does the resume
        await wait_for(lambda: state("running", 1), timeout=30)
        await wait_for(lambda: _total(redis, keys, ("processed",), 1), timeout=60)
        assert "fleet-wide pause caught up" in worker.output()
        assert "fleet-wide resume caught up" in worker.output()


async def test_pause_leaves_events_in_rabbitmq_and_resume_takes_them(
    settings: Settings, redis: Any, keys: Keys, spawn: Callable[..., Proc]
) -> None:
    store = ConfigStore(redis, keys, settings)
    settings = settings.replace(s3_url_mode="public")
    async with rabbit(settings) as mq:
        spawn(["worker", "ingest"], settings)
        await _fleet(redis, keys, 1)
        sent = await store.announce("pause", role="ingest")
        await _applied(redis, keys, sent.seq, n=1)
        assert (await workers(redis, keys))[0]["state"] == "paused"
        for i in range(3):
            await mq.publish(audio_event("pause", f"P{i}", 10, data=noise(100)))
        queue = await mq.channel.declare_queue(settings.ingest_queue, passive=True)
        assert queue.declaration_result.consumer_count == 0  # basic.cancel, not a local hold
        assert queue.declaration_result.message_count == 3
        sent = await store.announce("resume", role="ingest")
        await wait_for(lambda: _total(redis, keys, ("processed",), 3), timeout=60)

        # A fleet-wide pause flag set before a worker starts: it takes nothing at all.
        await redis.set(keys.paused, "1")
        spawn(["worker", "ingest"], settings)
        infos = await _fleet(redis, keys, 2)
        assert sorted(i["state"] for i in infos) == ["paused", "running"]
        queue = await mq.channel.declare_queue(settings.ingest_queue, passive=True)
        assert queue.declaration_result.consumer_count == 1  # only the first worker
        sent = await store.announce("pause", role="ingest")  # the first worker too
        await _applied(redis, keys, sent.seq, n=2)
        await mq.publish(audio_event("pause", "P4", 10, data=noise(100)))
        queue = await mq.channel.declare_queue(settings.ingest_queue, passive=True)
        assert queue.declaration_result.consumer_count == 0
        await redis.delete(keys.paused)
        await store.announce("resume", role="ingest")
        await wait_for(lambda: _total(redis, keys, ("processed",), 4), timeout=60)
        queued = await mq.drain(topology.GLOBAL_QUEUE)
        assert len(queued) == 4
        item = msgspec.json.decode(queued[0].body, type=QueuedAudio)
        public = f"{settings.s3_endpoint_url}/{settings.s3_bucket}/{item.s3Key}"
        assert item.audioUrl == public  # s3_url_mode=public: no signature
        stored, _ = await s3_get(settings, item.s3Key)
        await _make_bucket_public(settings)  # what an operator does for public mode
        async with httpx.AsyncClient() as client:
            fetched = await client.get(item.audioUrl)
        assert fetched.status_code == 200 and fetched.content == stored


def _management(settings: Settings) -> httpx.Client:
    parts = urlsplit(settings.rabbitmq_management_url)
    return httpx.Client(
        base_url=f"{parts.scheme}://{parts.hostname}:{parts.port}",
        auth=(parts.username or "guest", parts.password or "guest"),
        timeout=10,
    )


def _close_connections(settings: Settings) -> int:
    """Have RabbitMQ itself drop every connection to this test's vhost but our own."""
    vhost = quote(unquote(urlsplit(settings.rabbitmq_url).path.lstrip("/")), safe="")
    closed = 0
    with _management(settings) as api:
        for conn in api.get(f"/api/vhosts/{vhost}/connections").json():
            if (conn.get("client_properties") or {}).get("app") != "fila":
                continue  # the test's own connection
            api.delete(f"/api/connections/{quote(conn['name'], safe='')}").raise_for_status()
            closed += 1
    return closed


async def test_worker_reconnects_after_rabbitmq_drops_its_connection(
    settings: Settings, redis: Any, keys: Keys, spawn: Callable[..., Proc]
) -> None:
    async with rabbit(settings) as mq:
        spawn(["worker", "ingest"], settings)
        await _fleet(redis, keys, 1)
        await mq.publish(audio_event("rc", "R0", 10, data=noise(100)))
        await wait_for(lambda: _total(redis, keys, ("processed",), 1), timeout=30)

        async def dropped() -> bool:
            return await asyncio.to_thread(_close_connections, settings) > 0

        await wait_for(dropped, timeout=30, interval=1.0)  # management stats lag a little
        for i in range(1, 4):
            await mq.publish(audio_event("rc", f"R{i}", 10, data=noise(100)))
        await wait_for(lambda: _total(redis, keys, ("processed",), 4), timeout=60)
        assert await mq.depth(topology.GLOBAL_QUEUE) == 4


async def _make_bucket_public(settings: Settings) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{settings.s3_bucket}/*",
            }
        ],
    }
    async with s3_client(settings) as s3:
        await s3.put_bucket_policy(Bucket=settings.s3_bucket, Policy=json.dumps(policy))


async def test_noisy_instance_cannot_starve_the_others(
    settings: Settings, redis: Any, keys: Keys, spawn: Callable[..., Proc]
) -> None:
    """The noisy instance has the free zone; once it reaches the reserve, only the others draw."""
    store = ConfigStore(redis, keys, settings)
    await store.set_ratelimit(
        RateLimitConfig(
            capacity=20, refillPerMinute=6, policy="reject", reservePercent=50, instanceCapacity=3
        )
    )
    async with rabbit(settings) as mq:
        spawn(["worker", "ingest"], settings)
        await _fleet(redis, keys, 1)
        started = time.monotonic()
        for i in range(15):
            await mq.publish(audio_event("noisy", f"N{i}", 10, data=noise(100)))
        for i in range(3):
            await mq.publish(audio_event(f"quiet-{i}", f"Q{i}", 10, data=noise(100)))
        await wait_for(lambda: _total(redis, keys, ("processed", "rateLimited"), 18), timeout=60)
        elapsed = time.monotonic() - started
        noisy = await counters(redis, keys, "noisy")
        # 10 tokens above the reserve (fewer if a quiet one took one of them); none below it.
        assert 7 <= noisy["processed"] <= 10 + 0.1 * elapsed
        assert noisy["rateLimited"] == 15 - noisy["processed"]
        for i in range(3):
            assert (await counters(redis, keys, f"quiet-{i}"))["processed"] == 1


async def test_a_retried_event_does_not_take_a_second_token(
    settings: Settings, redis: Any, keys: Keys, spawn: Callable[..., Proc]
) -> None:
    """Admitted, then S3 fails: the retry goes on with the token it had, never rate-limited."""
    s3 = TcpProxy("127.0.0.1", services.S3_PORT)
    await s3.start()
    settings = settings.replace(s3_endpoint_url=f"http://{s3.url_host}")
    store = ConfigStore(redis, keys, settings)
    # One token, and the next one in about an hour: a second take would be refused.
    await store.set_ratelimit(RateLimitConfig(capacity=1, refillPerMinute=0.02, reservePercent=0))
    try:
        async with rabbit(settings) as mq:
            worker = spawn(["worker", "ingest"], settings)
            await _fleet(redis, keys, 1)
            await s3.cut()
            await mq.publish(audio_event("tok", "T1", 10, data=noise(300)))
            # S3 down after the token was taken: the event is held (sent round keeping its
            # token); restore S3 as soon as the hold begins.
            await wait_for(
                lambda: "holding: dependency unreachable" in worker.output(),
                timeout=60,
                interval=0.05,
            )
            await s3.restore()
            await wait_for(lambda: _count_for(redis, keys, "tok", "processed", 1), timeout=60)
            got = await counters(redis, keys, "tok")
            assert got.get("rateLimited", 0) == 0, got
            [queued] = await mq.drain(topology.GLOBAL_QUEUE)
            assert queued.message_id == "tok:T1"
    finally:
        await s3.close()
