"""The control side: how fast a configuration change reaches every worker, and the limiter's
accuracy when several processes share the bucket."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import msgspec

from fila.keys import Keys
from fila.models import RateLimitConfig
from fila.ratelimit import TokenBucket
from simulator.bench.harness import Bench
from simulator.limiterload import LoadReport
from simulator.receiver import percentile


async def propagation(b: Bench) -> dict[str, Any]:
    """PUT a filter, then wait until every worker's heartbeat says it applied that change."""
    samples: list[float] = []
    put_ms: list[float] = []
    missed = 0
    expected = 2 * b.workers
    for n in range(b.p.propagation_changes):
        started = time.time()
        await b.put(
            "/instance/bench-propagation/filters/audio",
            {"minDurationSeconds": 3 + n % 5, "maxDurationSeconds": 7200, "enabled": True},
        )
        put_ms.append((time.time() - started) * 1000)
        seq = int(await b.redis.get(b.keys.config_seq) or 0)
        deadline = time.monotonic() + 5
        while True:
            infos = await b.worker_infos()
            applied = [i for i in infos if i.appliedSeq >= seq]
            if len(applied) >= expected:
                samples.append((max(i.appliedAt for i in applied) - started) * 1000)
                break
            if time.monotonic() > deadline:
                missed += 1
                break
            await asyncio.sleep(0.002)
    samples.sort()
    return {
        "changes": b.p.propagation_changes,
        "workers": expected,
        "missed": missed,
        "p50Ms": round(percentile(samples, 50), 1) if samples else None,
        "p95Ms": round(percentile(samples, 95), 1) if samples else None,
        "p99Ms": round(percentile(samples, 99), 1) if samples else None,
        "maxMs": round(samples[-1], 1) if samples else None,
        "putRoundTripP50Ms": round(percentile(sorted(put_ms), 50), 1) if put_ms else None,
    }


async def limiter(b: Bench) -> dict[str, Any]:
    """N processes share one bucket; admitted should equal capacity + refill·t."""
    capacity, refill = 200, 12000.0
    prefix = f"{b.s.redis_prefix}limiter:"
    start_at = time.time() + 3.0
    config = RateLimitConfig(
        capacity=capacity,
        refillPerMinute=refill,
        instanceCapacity=10**9,
    )
    env = {**os.environ, **b.s.to_env()}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "simulator.limiterload",
            prefix,
            str(capacity),
            str(refill),
            str(start_at),
            str(b.p.limiter_seconds),
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(b.limiter_procs)
    ]
    # Open the window: take the whole capacity at once, so the bucket starts empty at a
    # known server time and no refill is lost to the cap before the processes begin.
    bucket = TokenBucket(b.redis, Keys(prefix))
    await bucket.peek("limiter", config)  # connections and script cache warm before the window
    await asyncio.sleep(max(0.0, start_at - 0.2 - time.time()))
    primed = await bucket.acquire("limiter", config, cost=capacity)
    raw_t0 = await b.redis.hget(Keys(prefix).bucket_global, "ts")
    if not primed.admitted or raw_t0 is None:
        raise RuntimeError("could not open the limiter window")
    t0 = float(raw_t0)
    reports: list[LoadReport] = []
    for proc in procs:
        out, _ = await asyncio.wait_for(proc.communicate(), b.p.limiter_seconds + 60)
        reports.append(msgspec.json.decode(out.strip().splitlines()[-1], type=LoadReport))
    admitted = capacity + sum(r.admitted for r in reports)
    # The bucket's own record closes the window: `ts` is the server time of the last call
    # and `tokens` what was left unspent then.
    raw_tokens, raw_ts = await b.redis.hmget(Keys(prefix).bucket_global, ["tokens", "ts"])
    if raw_tokens is None or raw_ts is None:
        raise RuntimeError("the limiter bucket was never written")
    tokens_left, last_ms = float(raw_tokens), float(raw_ts)
    span_s = (last_ms - t0) / 1000
    expected = capacity + refill / 60 * span_s - tokens_left
    return {
        "processes": b.limiter_procs,
        "capacity": capacity,
        "refillPerMinute": refill,
        "seconds": round(span_s, 3),
        "calls": sum(r.calls for r in reports),
        "admitted": admitted,
        "expected": round(expected, 1),
        "errorPercent": round(abs(admitted - expected) / expected * 100, 3),
    }
