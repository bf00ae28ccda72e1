"""The raw ceiling of each hop Fila is built from, measured with the same clients Fila uses,
so Fila's end-to-end figure has something honest to be compared with.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable

import aio_pika
import httpx
import msgspec

from fila import redisconn, s3
from fila.dev import services
from fila.httpcalls import Calls
from fila.keys import Keys
from fila.models import RateLimitConfig
from fila.ratelimit import TokenBucket
from fila.settings import Settings
from simulator.cpuusage import machine_busy


class HopResult(msgspec.Struct, kw_only=True):
    hop: str
    operations: int
    seconds: float
    perSecond: float
    concurrency: int
    errors: int = 0
    machineCores: float = 0.0
    """Cores the whole machine was busy while the hop ran: a hop whose server is one thread
    (moto's) reaches its ceiling with part of the machine idle."""


async def _for_duration(
    name: str, seconds: float, concurrency: int, op: Callable[[int], Awaitable[None]]
) -> HopResult:
    """Run `op` from `concurrency` tasks until `seconds` pass; count completed operations."""
    done = 0
    errors = 0
    deadline = time.monotonic() + seconds

    async def lane(lane_no: int) -> None:
        nonlocal done, errors
        n = 0
        while time.monotonic() < deadline:
            try:
                await op(lane_no * 1_000_000 + n)
                done += 1
            except Exception:
                errors += 1
            n += 1

    started, busy = time.monotonic(), machine_busy()
    await asyncio.gather(*(lane(i) for i in range(concurrency)))
    elapsed = time.monotonic() - started
    return HopResult(
        hop=name,
        operations=done,
        seconds=round(elapsed, 3),
        perSecond=round(done / elapsed, 1),
        concurrency=concurrency,
        errors=errors,
        machineCores=round((machine_busy() - busy) / elapsed, 2),
    )


async def amqp_publish_consume(settings: Settings, seconds: float) -> list[HopResult]:
    """Persistent 1 KB messages: publish with confirms (64 in flight), then consume with acks."""
    connection = await aio_pika.connect_robust(settings.rabbitmq_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue("bench.raw", durable=True)
        body = os.urandom(512).hex().encode()

        async def publish(_: int) -> None:
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key="bench.raw",
            )

        published = await _for_duration("amqp publish (confirms)", seconds, 64, publish)
        published.hop = "amqp publish (confirms)"

        consumer_channel = await connection.channel()
        await consumer_channel.set_qos(prefetch_count=128)
        cqueue = await consumer_channel.declare_queue("bench.raw", durable=True)
        consumed = 0
        finished = asyncio.Event()
        target = published.operations

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal consumed
            await message.ack()
            consumed += 1
            if consumed >= target:
                finished.set()

        started, busy = time.monotonic(), machine_busy()
        tag = await cqueue.consume(on_message)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished.wait(), timeout=max(30.0, seconds * 6))
        elapsed = time.monotonic() - started
        cores = round((machine_busy() - busy) / elapsed, 2)
        await cqueue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        consumed_result = HopResult(
            hop="amqp consume (acks)",
            operations=consumed,
            seconds=round(elapsed, 3),
            perSecond=round(consumed / elapsed, 1),
            concurrency=128,
            machineCores=cores,
        )
        return [published, consumed_result]
    finally:
        await connection.close()


async def redis_token_bucket(settings: Settings, seconds: float) -> HopResult:
    """Admissions through the real Lua token bucket (limits high enough never to refuse)."""
    client = redisconn.connect(settings)
    try:
        bucket = TokenBucket(client, Keys(settings.redis_prefix + "rawhop:"))
        config = RateLimitConfig(capacity=10**9, refillPerMinute=1e9, instanceCapacity=10**9)

        async def acquire(n: int) -> None:
            await bucket.acquire(f"inst-{n % 500}", config)

        return await _for_duration("redis token bucket", seconds, 32, acquire)
    finally:
        await client.aclose()


async def s3_put(settings: Settings, seconds: float) -> HopResult:
    """PutObject of a 32 KB object (16 in flight), sent as Fila's workers send it."""
    data = os.urandom(32 * 1024)
    async with services.s3_client(settings) as client:
        objects = await s3.BucketObjects.of(client, settings.s3_bucket)
        assert objects is not None, "the S3 client presigns URLs of a shape Fila cannot reuse"

        async def put(n: int) -> None:
            await objects.put(f"rawhop/{n}.ogg", data, "audio/ogg")

        return await _for_duration("s3 PutObject 32 KB", seconds, 16, put)


async def http_post(url: str, seconds: float) -> HopResult:
    """POST of a ~1 KB JSON body to the receiver (32 in flight, keep-alive)."""
    body = msgspec.json.encode({"event": "bench.raw", "data": {"pad": "x" * 900}})
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    # The client Fila's workers POST their webhooks with.
    calls = Calls(limits, httpx.Timeout(30))
    target = f"{url}/raw"

    async def post(_: int) -> None:
        async with calls.stream("POST", target, content=body, headers=headers) as answer:
            async for _chunk in answer.aiter_bytes():
                pass
            if answer.status_code >= 400:
                raise RuntimeError(f"the receiver answered {answer.status_code}")

    try:
        return await _for_duration("http POST to receiver", seconds, 32, post)
    finally:
        await calls.aclose()
