"""Fila on a real Redis Cluster (3 masters + 3 replicas started by `fila.dev.services`), and a
failover: the master holding the global bucket killed with SIGKILL while voice notes flow.

The cluster is created once per test session on ports of its own (a free block from 21600,
bus +10000), apart from the one `fila services redis-cluster up` runs, and wiped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from fila import redisconn
from fila.dev import services
from fila.keys import Keys
from fila.models import RateLimitConfig
from fila.ratelimit import TokenBucket
from fila.settings import Settings
from simulator.evolution import EvolutionStub
from simulator.receiver import Receiver
from tests.support import Proc, brought_up, wait_answering, wait_for
from tests.test_controlplane_support import migrated, start_controlplane
from tests.test_ingest_support import audio_event, counters, noise, rabbit, workers
from tests.test_simulator_bench import limiter_of_four

Spawn = Callable[..., Proc]
__all__ = ["migrated"]

BLOCKS = range(21600, 22600, 10)
"""Where a test run's local cluster or sentinel setup takes ports (bus ports: +10000)."""
CHAT = "5511977776666@s.whatsapp.net"
FAILOVER_NOTES = 1000
"""Voice notes of the failover run, offered at FAILOVER_RATE a second (~40 s of sending)."""
FAILOVER_RATE = 25


@contextlib.contextmanager
def port_block(base: Settings, size: int) -> Iterator[tuple[int, ...]]:
    """`size` ports (and each port + 10000) that no other test run holds: a lock file per
    block, held for the session, so runs at once never stop each other's servers."""
    data = Path(base.data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    for first in BLOCKS:
        with (data / f"ports-{first}.lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue
            ports = tuple(range(first, first + size))
            # Ours from a run that died without its teardown: stopped (the lock was free).
            services.LocalRedisCluster(base, ports).down(wipe=True)
            if any(services._port_open(p) or services._port_open(p + 10000) for p in ports):
                continue
            yield ports
            return
    raise RuntimeError(f"no free block of {size} ports in {BLOCKS}")


@pytest.fixture(scope="module")
def local_cluster(base_settings: Settings) -> Iterator[services.LocalRedisCluster]:
    with (
        port_block(base_settings, 6) as ports,
        brought_up(services.LocalRedisCluster(base_settings, ports)) as cluster,
    ):
        yield cluster


@pytest.fixture
async def on_cluster(
    settings: Settings, local_cluster: services.LocalRedisCluster
) -> AsyncIterator[Settings]:
    """The test's isolated settings (vhost, prefix, bucket), with Redis on the cluster."""
    local_cluster.up(report=lambda _: None)  # whole again if an earlier test killed a node
    yield local_cluster.settings(settings).replace(heartbeat_seconds=0.5)


@pytest.fixture
async def credis(on_cluster: Settings) -> AsyncIterator[Any]:
    client = redisconn.connect(on_cluster)
    assert isinstance(client, RedisCluster)
    yield client
    await client.aclose()


async def _control_plane(spawn: Spawn, cfg: Settings) -> tuple[Proc, str]:
    proc, base = start_controlplane(spawn, cfg)
    async with httpx.AsyncClient(timeout=5) as client:
        await wait_answering(
            client, f"{base}/healthz", proc.popen, proc.output, timeout=90, interval=0.25
        )
    return proc, base


UNHOOKED = {
    "principal": {"enabled": False},
    "monitoramento": {"enabled": False},
    "webhookByEvents": False,
    "headers": {},
}
"""The global webhooks before a test's own `hooks` are merged in."""


@contextlib.asynccontextmanager
async def hooked_control_plane(
    spawn: Spawn, cfg: Settings, hooks: dict[str, Any]
) -> AsyncIterator[tuple[Proc, httpx.AsyncClient]]:
    """A control plane on `cfg` and an admin client to it, the global webhooks set to `hooks`
    (a target left out is disabled), the rate limit and the emergency filter at their defaults.

    The control plane mirrors the run's PostgreSQL into this test's Redis at its start: what
    earlier tests stored there must not decide here (a 50-token bucket left by the bucket
    failover test refused 133 of the Sentinel test's 300 notes, reported to its long-gone
    monitoring receiver)."""
    plane, base = await _control_plane(spawn, cfg)
    async with httpx.AsyncClient(base_url=base, timeout=30, headers={"apikey": cfg.api_key}) as api:
        for path, body in (
            ("/webhook/global/config", {**UNHOOKED, **hooks}),
            ("/ratelimit", msgspec.to_builtins(RateLimitConfig())),
            ("/filters/emergency", {"enabled": False}),
        ):
            answer = await api.put(path, json=body)
            assert answer.status_code == 200, (path, answer.text)
        yield plane, api


async def apply_filter(
    api: httpx.AsyncClient,
    redis: Any,
    keys: Keys,
    instance: str,
    minimum: int,
    maximum: int,
    enabled: bool,
) -> None:
    """PUT `instance`'s audio filter (`minimum` to `maximum` seconds) while the workers run;
    wait until every worker has applied it."""
    before = max(w["appliedSeq"] for w in await workers(redis, keys))
    rule = {"minDurationSeconds": minimum, "maxDurationSeconds": maximum, "enabled": enabled}
    changed = await api.put(f"/instance/{instance}/filters/audio", json=rule)
    assert changed.status_code == 200, changed.text

    async def applied() -> bool:
        return all(w["appliedSeq"] > before for w in await workers(redis, keys))

    await wait_for(applied, timeout=30)


async def _fleet(redis: Any, keys: Keys, n: int) -> list[dict[str, Any]]:
    async def ready() -> bool:
        return len(await workers(redis, keys)) == n

    await wait_for(ready, timeout=60)
    return await workers(redis, keys)


def test_keys_moved_together_share_one_slot() -> None:
    """What one script, MULTI or MGET touches must hash to one slot (else CROSSSLOT)."""
    k = Keys("fila:")
    groups = [
        [
            k.bucket_global,
            k.bucket_instance("a"),
            k.bucket_instance("zz-9"),
            k.bucket_active,
            k.bucket_active_weights,
            k.bucket_active_weight_sum,
        ],
        [
            k.feedback_session("a:b"),
            k.feedback_session("c:d"),
            k.feedback_sessions,
            k.feedback_stats,
        ],
        [k.lock("cleanup"), k.cleanup_progress],
        [k.worker("ingest-h-1-ab"), k.worker("delivery-h-2-cd")],
        [k.object_stamp("shop-1"), k.event_object("shop-1", "shop-1:M1")],
    ]
    for group in groups:
        assert len({key_slot(key.encode()) for key in group}) == 1, group
    # Keys nothing ties together are spread (the idempotency marks of two events).
    assert key_slot(k.seen("a:1").encode()) != key_slot(k.seen("a:2").encode())


async def test_a_transaction_as_first_use_connects_in_the_callers_loop(
    on_cluster: Settings,
) -> None:
    """redis-py queues a cluster transaction's commands in a thread's own loop: a client first
    used by one (a control plane mirroring stored filters) kept connections of a closed loop."""
    keys = Keys(on_cluster.redis_prefix)
    client = redisconn.connect(on_cluster)
    try:
        pipe = client.pipeline(transaction=True)
        pipe.hset(keys.config_filters, "a", "1")
        pipe.hset(keys.config_filters, "b", "2")
        assert await pipe.execute() == [1, 1]
        loop = asyncio.get_running_loop()
        for node in cast(RedisCluster, client).get_nodes():
            for conn in node._connections:
                writer = getattr(conn, "_writer", None)
                if writer is not None:
                    assert writer.transport._loop is loop, node.name
        # Every node answers on the connections left in its pool.
        for _ in range(3):
            await cast(Any, client).ping(target_nodes=RedisCluster.ALL_NODES)
        assert await client.hgetall(keys.config_filters) == {b"a": b"1", b"b": b"2"}
    finally:
        await client.aclose()


async def test_a_fresh_client_under_32_callers_fails_no_admission(on_cluster: Settings) -> None:
    """redis-py 8.1 lets a caller use a cluster connection another is still opening ('NoneType'
    has no 'writelines'): a few % of the first limiter calls failed before that was retried."""
    client = redisconn.connect(on_cluster)
    bucket = TokenBucket(client, Keys(on_cluster.redis_prefix + "storm:"))
    config = RateLimitConfig(capacity=10**9, refillPerMinute=1e9, instanceCapacity=10**9)
    errors: list[str] = []
    calls = 0

    async def lane(n: int) -> None:
        nonlocal calls
        for i in range(60):
            try:
                await bucket.acquire(f"inst-{(n * 60 + i) % 500}", config)
                calls += 1
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    try:
        await asyncio.gather(*(lane(n) for n in range(32)))
    finally:
        await client.aclose()
    assert errors == [] and calls == 32 * 60, errors[:3]


@pytest.mark.usefixtures("migrated")
async def test_the_pipeline_runs_on_redis_cluster(
    on_cluster: Settings, credis: Any, spawn: Spawn
) -> None:
    """Filters applied live, counters and /queue/stats, feedback sessions: as on one node."""
    keys = Keys(on_cluster.redis_prefix)
    async with (
        EvolutionStub(api_key=on_cluster.evolution_api_key) as stub,
        Receiver(secret=on_cluster.webhook_secret) as receiver,
        rabbit(on_cluster) as mq,
    ):
        cfg = on_cluster.replace(
            evolution_url=stub.url, feedback_interval_seconds=0.3, feedback_timeout_seconds=60.0
        )
        hooks = {"principal": {"enabled": True, "url": receiver.url}}
        async with hooked_control_plane(spawn, cfg, hooks) as (_, api):
            for role in ("ingest", "ingest", "delivery"):
                spawn(["worker", role], cfg)
            await _fleet(credis, keys, 3)
            for i in range(10):
                await mq.publish(audio_event("shop", f"A{i}", 10, data=noise(300)))
            await receiver.wait_for_count(10, timeout=60)

            # Live: the filter changes while the workers run; every worker applies it.
            await apply_filter(api, credis, keys, "shop", 20, 60, enabled=True)
            for i in range(10):
                await mq.publish(audio_event("shop", f"S{i}", 10, data=noise(300)))
                await mq.publish(audio_event("shop", f"L{i}", 30, data=noise(300)))
                await mq.publish(audio_event("shop", f"X{i}", 90, data=noise(300)))
            got = await receiver.wait_for_count(20, timeout=60)

            async def counted() -> bool:
                mine = await counters(credis, keys, "shop")
                return mine.get("tooShort", 0) + mine.get("tooLong", 0) == 20

            await wait_for(counted, timeout=30)
            await asyncio.sleep(1)  # nothing more arrives: the filtered ones stay filtered
            ids = {d.json["data"]["key"]["id"] for d in receiver.accepted()}
            assert ids == {f"A{i}" for i in range(10)} | {f"L{i}" for i in range(10)}, ids
            assert len(got) == 20
            mine = await counters(credis, keys, "shop")
            assert (mine["tooShort"], mine["tooLong"], mine["processed"]) == (10, 10, 20), mine

            stats = (await api.get("/queue/stats")).json()
            assert stats["queueSize"] == 0 and stats["processedToday"] == 20, stats
            assert stats["audioFilterStats"] == {"tooShort": 10, "tooLong": 10, "processed": 20}
            assert stats["rateLimitStatus"]["tokens"] <= stats["rateLimitStatus"]["capacity"]

            # Feedback: a session ticks (several control-plane loops would share it), then ends.
            message_id = f"FB{uuid.uuid4().hex[:6]}"
            session = {"instance": "shop", "chatId": CHAT, "messageId": message_id}
            started = await api.post("/process/start", json=session)
            assert started.status_code == 200, started.text

            def reactions() -> list[str]:
                return [
                    c.json["reaction"]
                    for c in stub.calls_to("sendReaction")
                    if c.json["key"]["id"] == message_id and c.status < 400
                ]

            await wait_for(lambda: len(reactions()) >= 3, timeout=30)
            status = (await api.get("/process/status")).json()
            assert status["activeSessionsCount"] == 1, status
            finished = await api.post("/process/finish", json={**session, "status": "success"})
            assert finished.status_code == 200, finished.text
            await wait_for(lambda: reactions()[-1] == "✅", timeout=30)
            status = (await api.get("/process/status")).json()
            assert status["activeSessionsCount"] == 0, status


async def test_limiter_accuracy_across_four_processes_on_redis_cluster(
    on_cluster: Settings,
) -> None:
    result = await limiter_of_four(on_cluster)
    print(f"\nlimiter on Redis Cluster: {result}")
    assert result["processes"] == 4 and result["calls"] > result["admitted"] > 200
    assert result["errorPercent"] <= 0.5, result


@pytest.mark.usefixtures("migrated")
async def test_failover_of_the_bucket_master_loses_nothing(
    on_cluster: Settings, credis: Any, spawn: Spawn, local_cluster: services.LocalRedisCluster
) -> None:
    """kill -9 of the master holding the global bucket mid-stream: every note delivered or
    refused by id, admissions within the bucket's allowance plus the failover window's tokens."""
    keys = Keys(on_cluster.redis_prefix)
    refill = 600.0  # 10 tokens/s for 25 notes/s offered: the limit binds all along
    limit = RateLimitConfig(
        capacity=50, refillPerMinute=refill, reservePercent=0, instanceCapacity=10**6
    )
    instances = [f"fo-{n:02d}" for n in range(20)]
    async with (
        Receiver(secret=on_cluster.webhook_secret) as main,
        Receiver(secret=on_cluster.webhook_secret) as monitor,
        rabbit(on_cluster) as mq,
    ):
        # Configured through a real control plane, then one started on that stored state (its
        # start mirrors filters in a MULTI) that stays up across the failover.
        hooks = {
            "principal": {"enabled": True, "url": main.url},
            "monitoramento": {"enabled": True, "url": monitor.url},
        }
        async with hooked_control_plane(spawn, on_cluster, hooks) as (plane, api):
            limited = await api.put("/ratelimit", json=msgspec.to_builtins(limit))
            assert limited.status_code == 200, limited.text
            for instance in instances[:2]:
                filtered = await api.put(
                    f"/instance/{instance}/filters/audio",
                    json={"minDurationSeconds": 1, "maxDurationSeconds": 600, "enabled": True},
                )
                assert filtered.status_code == 200, filtered.text
        assert plane.terminate() == 0, plane.output()[-2000:]
        plane, _ = await _control_plane(spawn, on_cluster)
        for role in ("ingest", "ingest", "delivery", "delivery"):
            spawn(["worker", role], on_cluster)
        await _fleet(credis, keys, 4)

        # Empty the bucket at a known server time: from here it admits refill·t, no more.
        bucket = TokenBucket(cast(Any, credis), keys)
        primed = await bucket.acquire("prime", limit, cost=limit.capacity)
        assert primed.admitted
        t0 = float(await credis.hget(keys.bucket_global, "ts"))
        victim = credis.get_node_from_key(keys.bucket_global)
        started = time.monotonic()
        window = 0.0

        async def fail_over() -> float:
            await asyncio.sleep(10)
            local_cluster.kill(victim.port)
            killed = time.monotonic()
            await credis.hget(keys.bucket_global, "ts")  # answers once the replica took over
            return time.monotonic() - killed

        failover = asyncio.create_task(fail_over())
        for i in range(FAILOVER_NOTES):
            await mq.publish(audio_event(instances[i % 20], f"N{i:04d}", 10, data=noise(200)))
            await asyncio.sleep(max(0.0, started + (i + 1) / FAILOVER_RATE - time.monotonic()))
        window = await failover
        promoted = credis.get_node_from_key(keys.bucket_global)
        assert promoted.port != victim.port

        sent = {f"N{i:04d}" for i in range(FAILOVER_NOTES)}

        def delivered() -> set[str]:
            return {d.json["data"]["key"]["id"] for d in main.accepted()}

        def refused() -> set[str]:
            return {
                (e.get("data") or {}).get("messageId")
                for e in monitor.by_event("queue.error")
                if (e.get("data") or {}).get("error") == "Rate limit exceeded"
            }

        try:
            await wait_for(lambda: not sent - delivered() - refused(), timeout=90, interval=1)
        except AssertionError:
            left = sorted(sent - delivered() - refused())
            raise AssertionError(
                f"{len(left)} notes neither delivered nor refused: {left[:5]}"
            ) from None
        tokens_left, last = await credis.hmget(keys.bucket_global, ["tokens", "ts"])
        span = (float(last) - t0) / 1000
        allowance = refill / 60 * span - float(tokens_left)
        window_tokens = refill / 60 * window
        admitted = len(delivered() & sent)
        lost = sent - delivered() - refused()
        excess = admitted - allowance
        print(
            f"\nfailover: master :{victim.port} killed at 10 s, :{promoted.port} serving after "
            f"{window:.1f} s; sent={FAILOVER_NOTES} delivered={admitted} "
            f"refused={len(refused() - delivered())} both={len(refused() & delivered())} "
            f"lost={len(lost)}; allowance={allowance:.1f} over {span:.1f} s, "
            f"excess={excess:+.1f} (bound: {window_tokens:.1f} failover-window tokens)"
        )
        assert plane.popen.poll() is None, plane.output()[-2000:]
        assert lost == set()
        assert not refused() & delivered()
        assert excess <= window_tokens, (admitted, allowance, window_tokens)
        assert admitted > 0.9 * allowance  # the limit bound: tokens were not left unspent


@pytest.mark.usefixtures("migrated")
async def test_workers_catch_up_after_the_control_channel_master_fails(
    on_cluster: Settings, credis: Any, spawn: Spawn, local_cluster: services.LocalRedisCluster
) -> None:
    """Workers subscribed on the master that dies still apply a filter change announced after
    its replica took over (re-subscribed and re-read, or told by their heartbeat's sequence)."""
    keys = Keys(on_cluster.redis_prefix)
    async with Receiver(secret=on_cluster.webhook_secret) as receiver, rabbit(on_cluster) as mq:
        hooks = {"principal": {"enabled": True, "url": receiver.url}}
        async with hooked_control_plane(spawn, on_cluster, hooks) as (_, api):
            fleet = [spawn(["worker", role], on_cluster) for role in ("ingest", "delivery")]
            await _fleet(credis, keys, 2)
            victim = credis.get_node_from_key(keys.control_channel)

            async def subscribed_on_victim() -> bool:
                direct = aioredis.Redis(host=victim.host, port=victim.port)
                try:
                    [(_, count)] = await direct.pubsub_numsub(keys.control_channel)
                finally:
                    await direct.aclose()
                return int(count) == 2

            await wait_for(subscribed_on_victim, timeout=15)
            await mq.publish(audio_event("cu", "B0", 10, data=noise(200)))
            await receiver.wait_for_count(1, timeout=30)  # the filters of "cu" are cached now

            local_cluster.kill(victim.port)
            await credis.exists(keys.control_channel)  # answers once the replica took over
            assert credis.get_node_from_key(keys.control_channel).port != victim.port
            changed = await api.put(
                "/instance/cu/filters/audio",
                json={"minDurationSeconds": 20, "maxDurationSeconds": 60, "enabled": True},
            )
            assert changed.status_code == 200, changed.text

            probes = 0

            async def filtered() -> bool:
                nonlocal probes
                probes += 1
                await mq.publish(audio_event("cu", f"P{probes}", 10, data=noise(200)))
                return (await counters(credis, keys, "cu")).get("tooShort", 0) > 0

            # The cached filters would otherwise last filter_cache_ttl_seconds (300 s).
            await wait_for(filtered, timeout=30, interval=1)
            short = (await counters(credis, keys, "cu"))["tooShort"]
            for i in range(5):
                await mq.publish(audio_event("cu", f"Q{i}", 10, data=noise(200)))

            async def counted() -> bool:
                return (await counters(credis, keys, "cu"))["tooShort"] >= short + 5

            await wait_for(counted, timeout=30)
            await asyncio.sleep(1)
            ids = {d.json["data"]["key"]["id"] for d in receiver.accepted()}
            assert not ids & {f"Q{i}" for i in range(5)}, ids
            logs = " ".join(p.output() for p in fleet)
            print(
                f"\ncontrol channel master :{victim.port} killed; filter applied after {probes} "
                f"probe(s); re-subscribed: {'control channel lost' in logs}, caught up by "
                f"heartbeat: {'control messages missed' in logs}"
            )
