"""The in-memory tally against a real Redis: the same totals as one write per note, none lost
when a write fails."""

from __future__ import annotations

import redis.asyncio as aioredis

from fila import stats
from fila.keys import Keys
from fila.settings import Settings
from fila.tally import Tally


async def _write(tally: Tally, redis: aioredis.Redis) -> None:
    pipe = redis.pipeline(transaction=False)
    taken = tally.write_on(pipe)
    try:
        await pipe.execute()
    except BaseException:
        tally.put_back(taken)
        raise


async def test_a_tally_writes_what_a_write_per_note_would_have(
    settings: Settings, redis: aioredis.Redis, keys: Keys
) -> None:
    counters = stats.Counters(redis, keys, settings.timezone)
    tally = Tally(counters)
    seconds = [0.003, 0.02, 0.02, 0.7, 45.0, 120.0]
    for n in range(60):
        tally.add(f"inst-{n % 3}", {stats.DELIVERED: 1})
        tally.latency("delivery", seconds[n % len(seconds)])
    tally.add(None, {stats.DELIVERY_FAILED: 2})
    assert tally.pending
    await _write(tally, redis)
    assert not tally.pending

    for n in range(3):
        got = await redis.hgetall(keys.stats_instance(f"inst-{n}"))
        assert int(got[b"delivered"]) == 20
    totals = await counters.global_counts()
    assert totals[stats.DELIVERED] == 60 and totals[stats.DELIVERY_FAILED] == 2
    assert await counters.processed_today() == 60
    assert set(await counters.instances()) == {"inst-0", "inst-1", "inst-2"}
    buckets, total, count = await stats.read_latency(redis, keys, "delivery")
    assert count == 60
    assert abs(total - 10 * sum(seconds)) < 1e-6
    cumulative = dict(buckets)
    assert cumulative["0.005"] == 10 and cumulative["0.025"] == 30 and cumulative["1.0"] == 40
    assert cumulative["60.0"] == 50 and cumulative["+Inf"] == 60


async def test_a_failed_write_keeps_its_totals_for_the_next(
    settings: Settings, redis: aioredis.Redis, keys: Keys
) -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.5)
    tally = Tally(stats.Counters(dead, keys, settings.timezone))
    for _ in range(5):
        tally.add("inst-x", {stats.DELIVERED: 1})
        tally.latency("end_to_end", 0.2)
    try:
        await _write(tally, dead)
    except Exception:
        pass
    else:
        raise AssertionError("a write to a closed port went through")
    finally:
        await dead.aclose()
    tally.add("inst-x", {stats.DELIVERED: 1})
    tally.latency("end_to_end", 0.3)

    tally.counters = stats.Counters(redis, keys, settings.timezone)
    await _write(tally, redis)
    got = await redis.hgetall(keys.stats_instance("inst-x"))
    assert int(got[b"delivered"]) == 6
    _, total, count = await stats.read_latency(redis, keys, "end_to_end")
    assert count == 6 and abs(total - 1.3) < 1e-6
