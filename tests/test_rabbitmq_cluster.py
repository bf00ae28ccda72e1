"""Fila on a real 3-node RabbitMQ cluster with quorum queues (started by `fila.rabbitcluster`
once per session on ports of its own, 21520-21522, and wiped at the end): every queue
replicated, a leader killed with SIGKILL and a follower stopped while voice notes flow.

At the issue's scale (1,000 notes a run, a follower down 30 s), the module takes about 160 s
on 2 cores, cluster start included.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import msgspec
import pytest
import yaml
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from fila import startup, topology
from fila.configstore import ConfigStore
from fila.dev.rabbitcluster import LocalRabbitCluster
from fila.keys import Keys
from fila.models import RateLimitConfig, WebhookConfig, WebhookTarget
from fila.settings import Settings, from_env
from simulator.receiver import Receiver
from tests.faults import TcpProxy
from tests.support import Proc, brought_up, wait_for
from tests.test_ingest_support import audio_event, noise, workers

Spawn = Callable[..., Proc]

PORTS = (21520, 21521, 21522)
NODE_LOSS_NOTES = 1000
NODE_LOSS_RATE = 25
"""~40 s of sending; the leader of global.messages is killed at KILL_AT and back at BACK_AT."""
KILL_AT = 10.0
BACK_AT = 25.0
FOLLOWER_NOTES = 1000
FOLLOWER_RATE = 20
"""~50 s of sending: a follower stopped at KILL_AT for FOLLOWER_DOWN_SECONDS."""
FOLLOWER_DOWN_SECONDS = 30.0


@pytest.fixture(scope="module")
def rabbit_cluster(base_settings: Settings) -> Iterator[LocalRabbitCluster]:
    with brought_up(LocalRabbitCluster(base_settings, PORTS)) as cluster:
        yield cluster


@pytest.fixture
async def on_cluster(
    settings: Settings, rabbit_cluster: LocalRabbitCluster
) -> AsyncIterator[Settings]:
    """The test's isolated settings (Redis prefix, bucket) on a vhost of its own on the cluster."""
    await asyncio.to_thread(rabbit_cluster.up, lambda _: None)  # whole again after a kill
    vhost = f"test-{uuid.uuid4().hex[:10]}"
    await asyncio.to_thread(rabbit_cluster.add_vhost, vhost)
    yield rabbit_cluster.settings(settings, vhost).replace(heartbeat_seconds=0.5)
    with contextlib.suppress(Exception):
        await asyncio.to_thread(rabbit_cluster.ctl, PORTS[0], "delete_vhost", vhost)


def _types(cluster: LocalRabbitCluster, vhost: str) -> dict[str, str]:
    out = cluster.ctl(
        PORTS[0], "list_queues", "-p", vhost, "name", "type", "--quiet", "--no-table-headers"
    )
    return dict(line.split("\t", 1) for line in out.strip().splitlines())


def _vhost(cfg: Settings) -> str:
    return urlsplit(cfg.rabbitmq_url).path.lstrip("/")


class Publisher:
    """Evolution API's side: publish each event until the cluster confirms it (whichever node)."""

    def __init__(self, cfg: Settings, connection: AbstractRobustConnection) -> None:
        self.cfg = cfg
        self.connection = connection
        self.channel: AbstractChannel | None = None
        self.retried = 0

    async def publish(self, event: dict[str, Any]) -> None:
        body = msgspec.json.encode(event)
        while True:
            try:
                if self.channel is None or self.channel.is_closed:
                    self.channel = await self.connection.channel(publisher_confirms=True)
                exchange = await self.channel.get_exchange(self.cfg.evolution_exchange)
                await exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=self.cfg.evolution_routing_key,
                    timeout=5,
                )
                return
            except Exception:
                self.retried += 1
                self.channel = None
                await asyncio.sleep(0.5)


@contextlib.asynccontextmanager
async def _publisher(cfg: Settings) -> AsyncIterator[Publisher]:
    connection = await topology.connect(cfg)
    try:
        channel = await connection.channel()
        await topology.declare_all(channel, cfg)
        yield Publisher(cfg, connection)
    finally:
        await connection.close()


async def _pipeline(
    cfg: Settings, spawn: Spawn, redis: Any, main: Receiver
) -> tuple[Keys, list[Proc]]:
    """Webhook and a limit that never binds, configured in Redis; 2 ingest + 2 delivery."""
    keys = Keys(cfg.redis_prefix)
    store = ConfigStore(redis, keys, cfg)
    await store.set_webhook(WebhookConfig(principal=WebhookTarget(enabled=True, url=main.url)))
    await store.set_ratelimit(
        RateLimitConfig(
            capacity=10**6, refillPerMinute=10**6, reservePercent=0, instanceCapacity=10**6
        )
    )
    procs = [spawn(["worker", role], cfg) for role in ("ingest", "ingest", "delivery", "delivery")]

    async def ready() -> bool:
        return len(await workers(redis, keys)) == 4

    await wait_for(ready, timeout=90)
    return keys, procs


def _tails(procs: list[Proc], lines: int = 40) -> str:
    """The end of each worker's log, for an assertion's message."""
    return "\n".join(
        f"--- worker {n}\n" + "\n".join(proc.output().splitlines()[-lines:])
        for n, proc in enumerate(procs)
    )


async def _send(
    pub: Publisher, prefix: str, count: int, rate: float, at: dict[float, Callable[[], Any]]
) -> dict[str, float]:
    """`count` notes at `rate`/s from 20 instances; `at[t]` runs (in a thread) t s in.

    Returns when (epoch s, as the receiver stamps deliveries) sending and each fault began."""
    started = time.monotonic()
    faults = [asyncio.create_task(_after(started + t, fault)) for t, fault in at.items()]
    when = {"start": time.time()}
    for i in range(count):
        event = audio_event(f"qc-{i % 20:02d}", f"{prefix}{i:04d}", 10, data=noise(200))
        await pub.publish(event)
        await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.monotonic()))
    when["end"] = time.time()
    return when | dict(await asyncio.gather(*faults))


async def _after(when: float, fault: Callable[[], Any]) -> tuple[str, float]:
    await asyncio.sleep(max(0.0, when - time.monotonic()))
    began = time.time()
    await asyncio.to_thread(fault)
    return fault.__name__, began


async def _reconciled(main: Receiver, sent: set[str], timeout: float) -> collections.Counter[str]:
    def delivered() -> collections.Counter[str]:
        return collections.Counter(d.json["data"]["key"]["id"] for d in main.accepted())

    try:
        await wait_for(lambda: not sent - set(delivered()), timeout=timeout, interval=1)
    except AssertionError:
        left = sorted(sent - set(delivered()))
        raise AssertionError(f"{len(left)} notes never delivered: {left[:5]}") from None
    return delivered()


async def _nobody_stuck(
    pub: Publisher, main: Receiver, redis: Any, keys: Keys, cfg: Settings
) -> None:
    """Every worker still heartbeats, the queues are empty, and new notes flow at once."""
    assert len(await workers(redis, keys)) == 4
    fresh = {f"after-{i}" for i in range(20)}
    for note in sorted(fresh):
        await pub.publish(audio_event("qc-after", note, 10, data=noise(200)))
    await _reconciled(main, fresh, timeout=30)
    connection = await topology.connect_once(cfg)
    try:
        channel = await connection.channel()
        for name in (cfg.ingest_queue, topology.GLOBAL_QUEUE, topology.GLOBAL_DLQ):
            ready, _ = await topology.queue_counts(channel, name)
            assert ready == 0, (name, ready)
    finally:
        await connection.close()


# ------------------------------------------------------------------------------- connections


async def test_a_connection_moves_to_the_next_node_when_its_own_goes(settings: Settings) -> None:
    """Two addresses of one broker through proxies: cut the first, the robust connection (and
    its channel) carries on through the second; a first address already down is skipped."""
    target = urlsplit(settings.rabbitmq_url)
    first = TcpProxy("127.0.0.1", target.port or 5672)
    second = TcpProxy("127.0.0.1", target.port or 5672)
    await first.start()
    await second.start()
    netloc = target.netloc.rpartition("@")[0] + "@" + first.url_host
    cfg = settings.replace(
        rabbitmq_url=urlunsplit(target._replace(netloc=netloc)), rabbitmq_nodes=second.url_host
    )
    connection = await topology.connect(cfg)
    try:
        assert connection.url.port == first.port
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue("rotation", durable=True)
        await first.cut()

        async def moved() -> bool:
            try:
                await channel.default_exchange.publish(
                    aio_pika.Message(b"x"), routing_key="rotation", timeout=2
                )
            except Exception:
                return False
            return True

        await wait_for(moved, timeout=30, interval=0.5)
        assert connection.url.port == second.port
        assert (await topology.queue_counts(channel, queue.name))[0] >= 1
        await connection.close()
        connection = await topology.connect(cfg)  # the first is still down
        assert connection.url.port == second.port
    finally:
        await connection.close()
        await first.close()
        await second.close()


def test_the_compose_override_lists_every_node_and_quorum_for_every_fila_process() -> None:
    """compose.cluster.yaml cannot drift: 3 nodes, and each Fila service sees all of them."""
    root = Path(__file__).resolve().parent.parent
    base = yaml.safe_load((root / "compose.yaml").read_text())
    over = yaml.safe_load((root / "compose.cluster.yaml").read_text())
    nodes = [n for n in over["services"] if n.startswith("rabbitmq")]
    assert nodes == ["rabbitmq", "rabbitmq-2", "rabbitmq-3"]
    conf = over["configs"]["rabbitmq-cluster"]["content"]
    assert all(f"rabbit@{n}" in conf for n in nodes)
    fila = [n for n, svc in base["services"].items() if "build" in svc]
    for name in fila:
        env = {**base["services"][name]["environment"], **over["services"][name]["environment"]}
        mq = {k: _interpolated(str(v)) for k, v in env.items() if k.startswith("FILA_RABBITMQ")}
        cfg = from_env(mq, dotenv=None)
        hosts = [urlsplit(u).hostname for u in cfg.rabbitmq_urls]
        assert (hosts, cfg.rabbitmq_queue_type) == (nodes, "quorum"), name


def _interpolated(value: str) -> str:
    """${VAR:-default} as its default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


# ------------------------------------------------------------------------------- topology


async def test_every_queue_is_a_quorum_queue_and_works_as_one(
    on_cluster: Settings, rabbit_cluster: LocalRabbitCluster
) -> None:
    """Declared quorum (delay queues too); a delay hands back; an event redelivered past the
    delivery limit is dead-lettered by RabbitMQ into fila.ingest.dlq, not dropped."""
    connection = await topology.connect(on_cluster)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare_all(channel, on_cluster)
        await topology.declare_expiry_watch(channel, on_cluster)
        later = aio_pika.Message(b"{}", message_id="late")
        await topology.publish_later(channel, on_cluster, later, topology.GLOBAL_QUEUE, 300, set())
        types = await asyncio.to_thread(_types, rabbit_cluster, _vhost(on_cluster))
        delay = topology.delay_queue_name(topology.GLOBAL_QUEUE, 300, on_cluster)
        assert delay.endswith(".qdelay.300")
        expected = {name for name, _ in topology.fixed_queues(on_cluster)} | {delay}
        assert types == {name: "quorum" for name in expected}, types

        async def handed_back() -> bool:
            return (await topology.queue_counts(channel, topology.GLOBAL_QUEUE))[0] == 1

        await wait_for(handed_back, timeout=20)
        poison = aio_pika.Message(b"{}", message_id="poison")
        await topology.publish_confirmed(channel, poison, on_cluster.ingest_queue)
        ingest = await channel.get_queue(on_cluster.ingest_queue)
        deliveries = 0
        while (message := await ingest.get(fail=False, timeout=5)) is not None:
            deliveries += 1
            await message.nack(requeue=True)
            assert deliveries <= topology.QUORUM_DELIVERY_LIMIT + 1

        async def dead_lettered() -> bool:
            return (await topology.queue_counts(channel, topology.INGEST_DLQ))[0] == 1

        await wait_for(dead_lettered, timeout=20)
        dlq = await channel.get_queue(topology.INGEST_DLQ)
        letter = await dlq.get(timeout=5)
        assert letter.message_id == "poison"
        assert (letter.headers or {}).get("x-first-death-reason") == "delivery_limit"
        assert deliveries == topology.QUORUM_DELIVERY_LIMIT + 1
    finally:
        await connection.close()


async def test_switching_the_queue_type_stops_a_start_in_one_line(
    on_cluster: Settings, spawn: Spawn, rabbit_cluster: LocalRabbitCluster
) -> None:
    """Queues declared classic, then a worker started with quorum: one line, exit 1."""
    classic = on_cluster.replace(rabbitmq_queue_type="classic")
    connection = await topology.connect(classic)
    try:
        await topology.declare_all(await connection.channel(), classic)
    finally:
        await connection.close()
    proc = spawn(["worker", "delivery"], on_cluster)
    await wait_for(lambda: proc.popen.poll() is not None, timeout=60)
    lines = [line for line in proc.output().splitlines() if line.strip()]
    assert proc.popen.returncode == 1, proc.output()
    assert lines == [
        f"error: queue {on_cluster.ingest_queue!r} is a classic queue but "
        "FILA_RABBITMQ_QUEUE_TYPE=quorum: set FILA_RABBITMQ_QUEUE_TYPE=classic, or drain "
        "and delete Fila's classic queues first (README: changing the queue type)"
    ], lines
    await startup.rabbitmq(classic)  # as they are: starts

    # The other way round: quorum queues (a vhost of their own), a process set to classic.
    vhost = f"{_vhost(on_cluster)}-q"
    await asyncio.to_thread(rabbit_cluster.add_vhost, vhost)
    quorum = on_cluster.replace(rabbitmq_url=f"{on_cluster.rabbitmq_url}-q")
    connection = await topology.connect(quorum)
    try:
        await topology.declare_all(await connection.channel(), quorum)
    finally:
        await connection.close()
    try:
        with pytest.raises(startup.QueueTypeMismatch) as refused:
            await startup.rabbitmq(quorum.replace(rabbitmq_queue_type="classic"))
        assert str(refused.value).startswith(
            f"queue {quorum.ingest_queue!r} is a quorum queue but FILA_RABBITMQ_QUEUE_TYPE="
            "classic: set FILA_RABBITMQ_QUEUE_TYPE=quorum"
        ), refused.value
        await startup.rabbitmq(quorum)
    finally:
        await asyncio.to_thread(rabbit_cluster.ctl, PORTS[0], "delete_vhost", vhost)


# ------------------------------------------------------------------------------- node faults


async def test_the_leader_of_global_messages_killed_mid_run_loses_nothing(
    on_cluster: Settings, redis: Any, spawn: Spawn, rabbit_cluster: LocalRabbitCluster
) -> None:
    """kill -9 of the node leading global.messages while notes flow (ingest → S3 →
    global.messages → main webhook), back 15 s later: every note delivered, by id."""
    async with Receiver(secret=on_cluster.webhook_secret) as main, _publisher(on_cluster) as pub:
        keys, procs = await _pipeline(on_cluster, spawn, redis, main)
        vhost = _vhost(on_cluster)
        victim = await asyncio.to_thread(rabbit_cluster.leader, vhost, topology.GLOBAL_QUEUE)

        def kill_leader() -> None:
            rabbit_cluster.kill(victim)

        def bring_back() -> None:
            rabbit_cluster.start_node(victim)

        when = await _send(
            pub, "K", NODE_LOSS_NOTES, NODE_LOSS_RATE, {KILL_AT: kill_leader, BACK_AT: bring_back}
        )
        sent = {f"K{i:04d}" for i in range(NODE_LOSS_NOTES)}
        got = await _reconciled(main, sent, timeout=120)
        down = (when["kill_leader"], when["bring_back"])
        during = [d for d in main.accepted() if down[0] < d.received_at < down[1]]
        new_leader = await asyncio.to_thread(rabbit_cluster.leader, vhost, topology.GLOBAL_QUEUE)
        duplicates = sum(n - 1 for n in got.values())
        print(
            f"\nnode loss: leader :{victim} killed at {down[0] - when['start']:.1f} s, back at "
            f"{down[1] - when['start']:.1f} s, new leader :{new_leader}; sent={len(sent)} "
            f"delivered={len(sent & set(got))} lost={len(sent - set(got))} "
            f"duplicates={duplicates} delivered while the node was down={len(during)} "
            f"publisher retries={pub.retried}"
        )
        other = next(p for p in PORTS if p != victim)
        back = await asyncio.to_thread(rabbit_cluster.members, other)
        assert rabbit_cluster.node(victim) in back, back  # rejoined its cluster
        assert not sent - set(got)
        # The pipeline carried on through the other nodes (seen to fail once in a full run,
        # 0 delivered in the window, nothing lost; the workers' logs say why next time).
        assert len(during) > 0, _tails(procs)
        await _nobody_stuck(pub, main, redis, keys, on_cluster)


async def test_a_follower_stopped_30_s_loses_nothing_and_throughput_recovers(
    on_cluster: Settings, redis: Any, spawn: Spawn, rabbit_cluster: LocalRabbitCluster
) -> None:
    """One follower of global.messages stopped for 30 s then started: every note delivered, and
    the rate after its return is the rate offered."""
    async with Receiver(secret=on_cluster.webhook_secret) as main, _publisher(on_cluster) as pub:
        keys, _ = await _pipeline(on_cluster, spawn, redis, main)
        vhost = _vhost(on_cluster)
        leader = await asyncio.to_thread(rabbit_cluster.leader, vhost, topology.GLOBAL_QUEUE)
        follower = next(p for p in reversed(PORTS) if p != leader)

        def stop_follower() -> None:
            rabbit_cluster.stop_node(follower)

        def start_follower() -> None:
            rabbit_cluster.start_node(follower)

        up_at = KILL_AT + FOLLOWER_DOWN_SECONDS
        when = await _send(
            pub,
            "F",
            FOLLOWER_NOTES,
            FOLLOWER_RATE,
            {KILL_AT: stop_follower, up_at: start_follower},
        )
        sent = {f"F{i:04d}" for i in range(FOLLOWER_NOTES)}
        got = await _reconciled(main, sent, timeout=120)

        def rate(start: float, end: float) -> float:
            n = sum(1 for d in main.accepted() if start <= d.received_at < end)
            return n / (end - start)

        stopped, started = when["stop_follower"], when["start_follower"]
        before = rate(when["start"] + 2, stopped)
        down = rate(stopped + 2, started)
        after = rate(started + 2, when["end"])
        print(
            f"\nfollower :{follower} of leader :{leader} stopped {stopped - when['start']:.1f}-"
            f"{started - when['start']:.1f} s; sent={len(sent)} lost={len(sent - set(got))} "
            f"duplicates={sum(n - 1 for n in got.values())}; delivered/s before={before:.1f} "
            f"while down={down:.1f} after={after:.1f} (offered {FOLLOWER_RATE})"
        )
        assert after >= 0.8 * FOLLOWER_RATE, after
        assert down >= 0.8 * FOLLOWER_RATE, down
        await asyncio.to_thread(rabbit_cluster.up, lambda _: None)
        assert await asyncio.to_thread(rabbit_cluster.healthy)
        await _nobody_stuck(pub, main, redis, keys, on_cluster)
