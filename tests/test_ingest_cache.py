"""The ingest config cache over the real Redis mirror: TTL and targeted invalidation."""

from __future__ import annotations

import asyncio
from typing import Any

from fila.audiofilter import AudioFilter, EmergencyFilter
from fila.configstore import ConfigStore
from fila.keys import Keys
from fila.models import ControlMessage, RateLimitConfig
from fila.settings import Settings
from workers.filtercache import ConfigCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _msg(scope: Any, instance: str | None = None) -> ControlMessage:
    return ControlMessage(seq=1, kind="config", scope=scope, instance=instance)


async def test_cache_serves_until_ttl_or_matching_invalidation(
    settings: Settings, redis: Any, keys: Keys
) -> None:
    store = ConfigStore(redis, keys, settings)
    clock = Clock()
    cache = ConfigCache(store, ttl=300, clock=clock)
    assert (await cache.filter_for("a")).minDurationSeconds == settings.audio_min_seconds
    await store.set_filter("a", AudioFilter(minDurationSeconds=10, maxDurationSeconds=20))
    await store.set_filter("b", AudioFilter(minDurationSeconds=11, maxDurationSeconds=20))
    assert (await cache.filter_for("b")).minDurationSeconds == 11
    await store.set_filter("b", AudioFilter(minDurationSeconds=12, maxDurationSeconds=20))

    assert (await cache.filter_for("a")).minDurationSeconds == 3  # cached, not re-read
    cache.invalidate(_msg("filters", "b"))  # another instance: a stays cached
    assert (await cache.filter_for("a")).minDurationSeconds == 3
    assert (await cache.filter_for("b")).minDurationSeconds == 12
    cache.invalidate(_msg("filters", "a"))
    assert (await cache.filter_for("a")).minDurationSeconds == 10

    await store.set_filter("a", AudioFilter(minDurationSeconds=15, maxDurationSeconds=20))
    clock.now += 299
    assert (await cache.filter_for("a")).minDurationSeconds == 10
    clock.now += 2  # past the TTL
    assert (await cache.filter_for("a")).minDurationSeconds == 15

    await store.set_emergency(
        EmergencyFilter(enabled=True, minDurationSeconds=1, maxDurationSeconds=2)
    )
    assert (await cache.filter_for("a")).minDurationSeconds == 15
    cache.invalidate(_msg("ratelimit"))  # not the emergency scope
    assert (await cache.filter_for("a")).minDurationSeconds == 15
    cache.invalidate(_msg("emergency"))
    assert (await cache.filter_for("a")).maxDurationSeconds == 2
    assert (await cache.filter_for("b")).maxDurationSeconds == 2

    assert (await cache.ratelimit()).capacity == settings.rate_capacity
    await store.set_ratelimit(RateLimitConfig(capacity=7))
    cache.invalidate(_msg("filters"))
    assert (await cache.ratelimit()).capacity == settings.rate_capacity
    cache.invalidate(_msg("all"))
    assert (await cache.ratelimit()).capacity == 7


class SlowStore(ConfigStore):
    """Holds each filter read, after it has read Redis, until the test lets it go."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read = asyncio.Event()
        self.release = asyncio.Event()

    async def filter_for(self, instance: str) -> AudioFilter:
        value = await super().filter_for(instance)
        self.read.set()
        await self.release.wait()
        return value


async def test_a_change_announced_during_a_read_is_not_hidden_by_it(
    settings: Settings, redis: Any, keys: Keys
) -> None:
    store = SlowStore(redis, keys, settings)
    cache = ConfigCache(store, ttl=300)
    reading = asyncio.create_task(cache.filter_for("race"))
    await store.read.wait()  # the old value is read, not yet cached
    await store.set_filter("race", AudioFilter(minDurationSeconds=9, maxDurationSeconds=90))
    cache.invalidate(_msg("filters", "race"))
    store.release.set()
    assert (await reading).minDurationSeconds == settings.audio_min_seconds  # was in flight
    assert (await cache.filter_for("race")).minDurationSeconds == 9  # not the stale read
