"""Fair sharing: a burst with the defaults, contention, weights (on the bucket), and end to end."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from fila.keys import Keys
from fila.models import RateLimitConfig
from simulator import fairness as fair
from simulator.bench.harness import Bench
from simulator.bench.report import jain
from simulator.events import VOICE_ONLY
from simulator.evolution import EvolutionStub
from simulator.simulate import Simulator


async def fairness(b: Bench, stub: EvolutionStub) -> dict[str, Any]:
    """Work-conserving fair sharing: a burst with the defaults, then contention, then weights.

    The limiter-level parts drive the shared bucket directly on Redis (exact figures);
    the end-to-end part sends through the whole pipeline to the receiver.
    """
    prefix = f"{b.s.redis_prefix}fairness:"
    burst = await fair.burst(
        b.redis, Keys(prefix + "burst:"), RateLimitConfig(), sent=100, seconds=10
    )
    contention_limits = RateLimitConfig(capacity=100, refillPerMinute=6000, reservePercent=30)
    contention = await fair.contention(
        b.redis,
        Keys(prefix + "contention:"),
        contention_limits,
        normals=50,
        normal_per_second=1.8,
        hot_factor=10,
        seconds=b.p.fairness_seconds,
    )
    weight_limits = RateLimitConfig(
        capacity=40,
        refillPerMinute=2400,
        instanceCapacity=2,
        weights={"w1": 1, "w3": 3},
    )
    weights = await fair.weighted(
        b.redis, Keys(prefix + "weights:"), weight_limits, per_second=120, seconds=10
    )
    return {
        "burst": {"limits": "defaults", **msgspec.to_builtins(burst)},
        "contention": {
            "limits": msgspec.to_builtins(contention_limits),
            "normalPerSecond": 1.8,
            "hotFactor": 10,
            **msgspec.to_builtins(contention),
        },
        "weights": {
            "limits": msgspec.to_builtins(weight_limits),
            **msgspec.to_builtins(weights),
        },
        "endToEnd": await _fairness_end_to_end(b, stub),
    }


async def _fairness_end_to_end(b: Bench, stub: EvolutionStub) -> dict[str, Any]:
    """50 instances at 90 % of their share plus one at 10× their rate, a 20/s global limit."""
    limits = {
        "capacity": 100,
        "refillPerMinute": 1200.0,
        "reservePercent": 30,
        "instanceCapacity": 20,
        "policy": "reject",
    }
    await b.put("/ratelimit", limits)
    await asyncio.sleep(1)
    await b.clear_receiver()
    hot = "sim-hot"
    per_instance = 0.9 * 1200 / 51  # per minute, 90 % of an equal share
    sim = Simulator(
        b.s,
        stub,
        instances=50,
        rate=per_instance * 60,
        duration=b.p.fairness_seconds,
        weights=VOICE_ONLY,
        hot_instance=hot,
        hot_factor=10,
        max_voice_seconds=10,
    )
    summary = await sim.run()
    stats = await b.wait_delivered(summary.sent, 30, stall=5)
    await b.purge()
    got: dict[str, int] = stats.get("byInstance", {})
    others = [n for n in summary.byInstance if n != hot]
    ratios = [got.get(n, 0) / summary.byInstance[n] for n in others if summary.byInstance[n]]
    index = jain(ratios)
    return {
        "limits": limits,
        "instances": len(others),
        "hotInstance": hot,
        "hotFactor": 10,
        "sent": summary.sent,
        "delivered": stats["accepted"],
        "hotSent": summary.byInstance.get(hot, 0),
        "hotDelivered": got.get(hot, 0),
        "othersSent": sum(summary.byInstance[n] for n in others),
        "othersDelivered": sum(got.get(n, 0) for n in others),
        "worstOtherShare": round(min(ratios), 4) if ratios else None,
        "jainOthers": round(index, 4) if index is not None else None,
    }
