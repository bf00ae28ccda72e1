"""Counters kept in Redis: workers write them, the control plane and TUI read them."""

from __future__ import annotations

import datetime as dt
import math
import time
import zoneinfo
from collections.abc import Iterable, Mapping

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from fila.keys import Keys

# Field names of the per-instance and global counter hashes.
RECEIVED = "received"
"""Audio events seen (before the filter)."""
TOO_SHORT = "tooShort"
TOO_LONG = "tooLong"
PROCESSED = "processed"
"""Audio that passed the filter and was queued on global.messages."""
RATE_LIMITED = "rateLimited"
"""Refused by the token bucket under the reject policy."""
DEFERRED = "deferred"
"""Held back by the token bucket under the defer policy (will come again)."""
INGEST_FAILED = "ingestFailed"
"""Dead-lettered at ingest (bad input, media or storage failure)."""
DUPLICATES = "duplicates"
"""Redelivered events recognised by their idempotency key."""
DELIVERED = "delivered"
DELIVERY_FAILED = "deliveryFailed"
"""Dead-lettered at delivery."""
DELIVERY_RETRIED = "deliveryRetried"
NON_AUDIO = "nonAudio"

FIELDS = (
    RECEIVED,
    TOO_SHORT,
    TOO_LONG,
    PROCESSED,
    RATE_LIMITED,
    DEFERRED,
    INGEST_FAILED,
    DUPLICATES,
    DELIVERED,
    DELIVERY_FAILED,
    DELIVERY_RETRIED,
    NON_AUDIO,
)


SEEN_REFRESH_SECONDS = 1.0
"""An instance's last-seen mark is re-sent by one process at most this often."""
EXPIRY_REFRESH_SECONDS = 60.0
"""A counter key's expiry (days away) is re-sent by one process at most this often."""
_SENT_KEPT = 4096
"""Below this many instances remembered, none is forgotten; above, stale ones go (memory flat)."""


def today(tz: str) -> str:
    return dt.datetime.now(zoneinfo.ZoneInfo(tz)).date().isoformat()


class Counters:
    """Increment and read Fila's counters, per instance and global, in one round trip each."""

    def __init__(
        self, redis: aioredis.Redis, keys: Keys, tz: str, retention_days: int = 30
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.tz = tz
        self.retention_seconds = retention_days * 86400
        """An instance's counters outlive its last event by this much, then go."""
        self._sent: dict[str, tuple[float, float]] = {}
        """Per instance, monotonic times its last-seen mark and its expiry were last sent."""
        self._prune_at = _SENT_KEPT
        self._day_sent: tuple[str, float] = ("", 0.0)

    async def bump(self, instance: str | None, counts: Mapping[str, int]) -> None:
        """Add `counts` to the global hash and to the instance's (which is marked seen)."""
        pipe = self.redis.pipeline(transaction=False)
        self.bump_on(pipe, instance, counts)
        await pipe.execute()

    def bump_on(self, pipe: Pipeline, instance: str | None, counts: Mapping[str, int]) -> None:
        """`bump`'s commands queued on the caller's pipeline, to share its round trip."""
        for field, n in counts.items():
            pipe.hincrby(self.keys.stats_global, field, n)
            if instance:
                pipe.hincrby(self.keys.stats_instance(instance), field, n)
            if field == DELIVERED:
                day_key = self.keys.processed_day(today(self.tz))
                pipe.incrby(day_key, n)
                if self._day_due(day_key):
                    pipe.expire(day_key, 3 * 86400)
        if instance:
            self._refresh_on(pipe, instance)

    def _refresh_on(self, pipe: Pipeline, instance: str) -> None:
        """The last-seen mark and the expiry, when due: they count seconds and days, so sending
        them with every event only cost commands."""
        now = time.monotonic()
        seen_at, expiry_at = self._sent.get(instance, (-math.inf, -math.inf))
        mark = now - seen_at >= SEEN_REFRESH_SECONDS
        expire = now - expiry_at >= EXPIRY_REFRESH_SECONDS
        if not (mark or expire):
            return
        if mark:
            pipe.zadd(self.keys.instances, {instance: time.time()})
            seen_at = now
        if expire:
            pipe.expire(self.keys.stats_instance(instance), self.retention_seconds)
            expiry_at = now
        self._sent[instance] = (seen_at, expiry_at)
        if len(self._sent) >= self._prune_at:  # amortised: at most once per doubling
            self._sent = {
                name: at for name, at in self._sent.items() if now - at[1] < EXPIRY_REFRESH_SECONDS
            }
            self._prune_at = max(_SENT_KEPT, 2 * len(self._sent))

    def _day_due(self, day_key: str) -> bool:
        key, at = self._day_sent
        now = time.monotonic()
        if key == day_key and now - at < EXPIRY_REFRESH_SECONDS:
            return False
        self._day_sent = (day_key, now)
        return True

    async def global_counts(self) -> dict[str, int]:
        raw = await self.redis.hgetall(self.keys.stats_global)
        return _ints(raw)

    async def processed_today(self) -> int:
        raw = await self.redis.get(self.keys.processed_day(today(self.tz)))
        return int(raw or 0)

    async def instances(self) -> dict[str, float]:
        """Every instance seen, with its last-seen epoch seconds."""
        raw = await self.redis.zrange(self.keys.instances, 0, -1, withscores=True)
        return {_text(pair[0]): float(pair[1]) for pair in raw if isinstance(pair, tuple)}

    async def forget_idle(self, idle_seconds: float) -> int:
        """Drop instances silent for `idle_seconds` from the live set (their counters stay)."""
        return int(
            await self.redis.zremrangebyscore(
                self.keys.instances, "-inf", time.time() - idle_seconds
            )
        )

    async def instance_counts(self, instances: Iterable[str]) -> dict[str, dict[str, int]]:
        names = list(instances)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self.keys.stats_instance(name))
        results = await pipe.execute()
        return {name: _ints(raw) for name, raw in zip(names, results, strict=True)}


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (seconds) of the latency histograms workers keep in Redis."""


async def record_latency(redis: aioredis.Redis, keys: Keys, name: str, seconds: float) -> None:
    """Add one observation to a fleet-wide histogram (read by the control plane's /metrics)."""
    pipe = redis.pipeline(transaction=False)
    record_latency_on(pipe, keys, name, seconds)
    await pipe.execute()


def record_latency_on(pipe: Pipeline, keys: Keys, name: str, seconds: float) -> None:
    """`record_latency`'s commands queued on the caller's pipeline, to share its round trip."""
    pipe.hincrby(keys.latency(name), latency_bucket(seconds), 1)
    pipe.hincrbyfloat(keys.latency(name), "sum", seconds)


def latency_bucket(seconds: float) -> str:
    """The histogram field an observation of `seconds` counts in."""
    bound = next((b for b in LATENCY_BUCKETS if seconds <= b), None)
    return f"le:{bound if bound is not None else '+Inf'}"


def record_latencies_on(
    pipe: Pipeline, keys: Keys, name: str, buckets: Mapping[str, int], total: float
) -> None:
    """Many observations at once: counts per `latency_bucket` field and their summed seconds."""
    for field, n in buckets.items():
        pipe.hincrby(keys.latency(name), field, n)
    pipe.hincrbyfloat(keys.latency(name), "sum", total)


async def read_latency(
    redis: aioredis.Redis, keys: Keys, name: str
) -> tuple[list[tuple[str, int]], float, int]:
    """Cumulative (bound, count) pairs ending with '+Inf', the sum and the count (the +Inf
    bucket's; a `count` field is no longer written)."""
    raw = {_text(k): _text(v) for k, v in (await redis.hgetall(keys.latency(name))).items()}
    running = 0
    buckets: list[tuple[str, int]] = []
    for bound in [*map(str, LATENCY_BUCKETS), "+Inf"]:
        running += int(raw.get(f"le:{bound}", 0))
        buckets.append((bound, running))
    return buckets, float(raw.get("sum", 0.0)), running


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ints(raw: Mapping[bytes | str, bytes | str]) -> dict[str, int]:
    out = dict.fromkeys(FIELDS, 0)
    for k, v in raw.items():
        out[k.decode() if isinstance(k, bytes) else k] = int(v)
    return out
