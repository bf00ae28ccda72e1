"""Object names on the real Redis: unique under concurrency, stable for a redelivered event."""

from __future__ import annotations

import asyncio
import re
import time

import redis.asyncio as aioredis

from fila.keys import Keys
from workers.objectnames import STAMP_MEMORY_SECONDS, ObjectNames

NAME = re.compile(r"audio_(\d{13})_shop-1\.ogg")


async def test_names_are_unique_per_event_and_stable_when_redelivered(
    redis: aioredis.Redis, keys: Keys
) -> None:
    # Two workers' worth of claimers, all in the same few milliseconds for one instance.
    names = [ObjectNames(redis, keys, 600), ObjectNames(redis, keys, 600)]
    before = int(time.time() * 1000)
    claimed = await asyncio.gather(
        *(
            names[i % 2].claim(f"shop-1:M{i}", "shop-1", "audio/ogg; codecs=opus")
            for i in range(300)
        )
    )
    assert len(set(claimed)) == 300
    stamps = sorted(int(m.group(1)) for m in map(NAME.fullmatch, claimed) if m)
    assert len(stamps) == 300 and stamps[0] >= before
    # A redelivered event gets its own name back, whichever worker asks.
    again = await asyncio.gather(
        *(names[(i + 1) % 2].claim(f"shop-1:M{i}", "shop-1", "audio/ogg") for i in range(300))
    )
    assert again == claimed
    # Another instance does not wait behind shop-1's stamps.
    other = await names[0].claim("shop-2:M0", "shop-2", "audio/mpeg")
    assert re.fullmatch(r"audio_\d{13}_shop-2\.mp3", other)
    # Bounded memory: one stamp key per instance and one per event, both expiring.
    stamp_key = keys.object_stamp("shop-1")
    assert 0 < await redis.ttl(stamp_key) <= STAMP_MEMORY_SECONDS
    assert 0 < await redis.ttl(keys.event_object("shop-1", "shop-1:M0")) <= 600
    assert int(await redis.get(stamp_key)) == stamps[-1]
