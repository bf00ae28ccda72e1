"""An admitted event keeps its token through any fault, and a decided one is never sent round again.

The pipeline runs in-process on the real Redis, RabbitMQ and S3; one call is made to fail at the
moment under test (a Redis connection dropping between two commands).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from fila import stats, topology
from fila.configstore import ConfigStore
from fila.httpcalls import Calls
from fila.keys import Keys
from fila.models import RateLimitConfig
from fila.settings import Settings
from tests.test_ingest_support import audio_event, counters, noise, rabbit
from workers.enqueue import Publisher
from workers.filtercache import ConfigCache
from workers.media import MediaFetcher
from workers.pipeline import Pipeline
from workers.storage import AudioStore


class Spy(Publisher):
    """The real publisher, remembering the headers of every delayed retry it published."""

    retries: list[dict[str, Any]]

    async def later(self, body: bytes, **kwargs: Any) -> None:
        self.retries.append(dict(kwargs["headers"]))
        await super().later(body, **kwargs)


@pytest.fixture
async def pipeline(
    settings: Settings, redis: aioredis.Redis, keys: Keys
) -> AsyncIterator[Pipeline]:
    store = ConfigStore(redis, keys, settings)
    # One token and the next in about an hour: a second take is refused.
    await store.set_ratelimit(RateLimitConfig(capacity=1, refillPerMinute=0.02, reservePercent=0))
    audio = AudioStore(settings)
    await audio.open()
    async with rabbit(settings) as mq, Calls(httpx.Limits(), httpx.Timeout(30.0)) as http:
        publisher = Spy(mq.channel, settings)
        publisher.retries = []
        await publisher.declare()
        yield Pipeline(
            settings,
            redis,
            publisher,
            ConfigCache(store, ttl=300),
            MediaFetcher(settings, http),
            audio,
        )
    await audio.close()


async def test_a_redis_fault_after_admission_keeps_the_token_for_the_retry(
    pipeline: Pipeline, redis: aioredis.Redis, keys: Keys
) -> None:
    body = json.dumps(audio_event("adm", "A1", 10, data=noise(2000))).encode()
    claim = pipeline.names.claim
    calls = 0

    async def drops_once(*args: Any) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RedisConnectionError("Connection closed by server.")
        return await claim(*args)

    pipeline.names.claim = drops_once  # type: ignore[method-assign]
    assert await pipeline.process(body, {}) == "retry"
    [headers] = pipeline.publisher.retries  # type: ignore[attr-defined]
    # A dropped Redis connection is Redis being down, not this event's fault (a hold reason).
    assert headers[topology.H_REASON] == "redis_unavailable"
    # The retry comes back with the headers it was published with: the bucket is empty now.
    assert await pipeline.process(body, headers) == "queued"
    got = await counters(redis, keys, "adm")
    assert got.get(stats.RATE_LIMITED, 0) == 0 and got[stats.PROCESSED] == 1, got


async def test_counts_failing_after_a_confirmed_publish_do_not_queue_it_twice(
    pipeline: Pipeline,
) -> None:
    body = json.dumps(audio_event("done", "D1", 10, data=noise(2000))).encode()
    real = pipeline.publisher.queue_audio
    queued: list[str] = []

    async def then_redis_drops(item: Any, body: bytes) -> None:
        await real(item, body)
        queued.append(item.id)
        # Redis goes away between the confirmed publish and the seen mark + counts.
        pipeline.redis = aioredis.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=1)

    pipeline.publisher.queue_audio = then_redis_drops  # type: ignore[method-assign]
    try:
        assert await pipeline.process(body, {}) == "queued"
    finally:
        await pipeline.redis.aclose()
    assert queued == ["done:D1"]
    assert pipeline.publisher.retries == []  # type: ignore[attr-defined]


async def test_a_duplicate_takes_no_token(
    pipeline: Pipeline, redis: aioredis.Redis, keys: Keys, settings: Settings
) -> None:
    """A duplicate is recognised before any token is taken: it must not refuse the next new
    voice note while the bucket really has room for it."""
    store = ConfigStore(redis, keys, settings)
    await store.set_ratelimit(RateLimitConfig(capacity=2, refillPerMinute=0.02, reservePercent=0))
    first = json.dumps(audio_event("dup", "P1", 10, data=noise(2000))).encode()
    assert await pipeline.process(first, {}) == "queued"  # one token left
    assert await pipeline.process(first, {}) == "duplicate"
    second = json.dumps(audio_event("dup", "P2", 10, data=noise(2000))).encode()
    assert await pipeline.process(second, {}) == "queued"
    third = json.dumps(audio_event("dup", "P3", 10, data=noise(2000))).encode()
    assert await pipeline.process(third, {}) == "rateLimited"  # the bucket is really spent
    got = await counters(redis, keys, "dup")
    assert got[stats.DUPLICATES] == 1 and got[stats.PROCESSED] == 2, got


async def test_a_note_filtered_by_its_own_seconds_is_counted_each_time_it_comes(
    pipeline: Pipeline, redis: aioredis.Redis, keys: Keys
) -> None:
    """Decided from the event alone (no seen lookup): filtered again when sent again, counted
    as received only when it is new, never taken for a duplicate or given a token."""
    body = json.dumps(audio_event("flt-own", "S1", 1, data=noise(100))).encode()
    assert await pipeline.process(body, {}) == "tooShort"
    assert await pipeline.process(body, {}) == "tooShort"
    assert await pipeline.process(body, {}, redelivered=True) == "tooShort"
    long = json.dumps(audio_event("flt-own", "L1", 7201, data=noise(100))).encode()
    assert await pipeline.process(long, {}) == "tooLong"
    got = await counters(redis, keys, "flt-own")
    assert got[stats.RECEIVED] == 3, got
    assert (got["tooShort"], got["tooLong"]) == (3, 1), got
    assert got.get(stats.DUPLICATES, 0) == 0 and got.get(stats.PROCESSED, 0) == 0, got
    assert not await redis.exists(keys.bucket_instance("flt-own"))
