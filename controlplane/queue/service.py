"""Queue figures (RabbitMQ depth, Redis counters, token bucket) and fleet pause/resume/drain."""

from __future__ import annotations

import msgspec

from controlplane import configlock, configrows
from controlplane.configlock import config_write
from controlplane.errors import FieldError
from controlplane.history import service as history
from controlplane.queue.schemas import (
    AudioFilterStats,
    QueueStats,
    RateLimitPatch,
    WeightRecord,
)
from controlplane.runtime import Runtime
from fila import ratelimit, stats, topology
from fila.models import ControlKind, RateLimitConfig, WorkerRole
from fila.views import RateLimitStatus

REPLACED_REFILL = (
    "is no longer set: an instance's share of the refill is refillPerMinute × its weight ÷ the"
    " active instances' total weight; remove the field"
)

PEEK_INSTANCE = "_controlplane"
"""Instance name used to read the global bucket level (peek takes nothing)."""


def refill_rate(per_minute: float) -> str:
    return f"{per_minute:g}/min"


async def depth(rt: Runtime, queue: str) -> int:
    """Ready messages, over the process's one queue-reading channel (not one per read)."""
    return await rt.queue_reads.depth(queue)


class QueueService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def ratelimit_status(self) -> RateLimitStatus:
        config = await self.rt.config.ratelimit()
        level = await self.rt.bucket.peek(PEEK_INSTANCE, config)
        return RateLimitStatus(
            tokens=round(level.globalTokens, 3),
            capacity=config.capacity,
            refillRate=refill_rate(config.refillPerMinute),
            policy=config.policy,
        )

    async def stats(self) -> QueueStats:
        counts = await self.rt.counters.global_counts()
        return QueueStats(
            queueSize=await depth(self.rt, topology.GLOBAL_QUEUE),
            processedToday=await self.rt.counters.processed_today(),
            rateLimitStatus=await self.ratelimit_status(),
            audioFilterStats=AudioFilterStats(
                tooShort=counts[stats.TOO_SHORT],
                tooLong=counts[stats.TOO_LONG],
                processed=counts[stats.PROCESSED],
            ),
        )

    async def control(self, kind: ControlKind, role: WorkerRole | None) -> int:
        """Order the fleet; a fleet-wide pause is remembered so restarted workers stay paused.

        Recorded in the history first: a Redis failure rolls the record back with the order."""
        async with config_write(configlock.FLEET):
            was = bool(await self.rt.redis.exists(self.rt.keys.paused))
            paused = (kind == "pause" and role is None) or (was and kind != "resume")
            await history.record(
                "fleet", {"paused": was}, {"action": kind, "role": role, "paused": paused}
            )
            if kind == "pause" and role is None:
                await self.rt.redis.set(self.rt.keys.paused, "1")
            elif kind == "resume":
                await self.rt.redis.delete(self.rt.keys.paused)
            message = await self.rt.config.announce(kind, role=role)
        return message.seq

    async def ratelimit(self) -> RateLimitConfig:
        stored = await configrows.load(configrows.RATELIMIT)
        if stored is None:
            return await self.rt.config.ratelimit()
        return msgspec.convert(stored, RateLimitConfig)

    async def set_ratelimit(self, patch: RateLimitPatch) -> RateLimitConfig:
        """Read, merge and store under the rate limit's lock."""
        async with config_write(configlock.RATELIMIT):
            return await self._set_ratelimit_locked(patch)

    async def weight(self, instance: str) -> WeightRecord:
        return weight_record(await self.ratelimit(), instance)

    async def set_weight(self, instance: str, weight: int) -> WeightRecord:
        """One instance's weight, merged into the rate limit under its lock (1 drops the entry)."""
        if not ratelimit.WEIGHT_MIN <= weight <= ratelimit.WEIGHT_MAX:
            raise FieldError("weight", f"must be {ratelimit.WEIGHT_MIN} to {ratelimit.WEIGHT_MAX}")
        async with config_write(configlock.RATELIMIT):
            current = await self.ratelimit()
            weights = {k: v for k, v in current.weights.items() if k != instance}
            if weight != 1:
                weights[instance] = weight
            updated = await self._set_ratelimit_locked(RateLimitPatch(weights=weights))
        return weight_record(updated, instance)

    async def _set_ratelimit_locked(self, patch: RateLimitPatch) -> RateLimitConfig:
        current = await self.ratelimit()
        if patch.instanceRefillPerMinute is not None:
            raise FieldError("instanceRefillPerMinute", REPLACED_REFILL)
        changes = {
            k: v
            for k, v in msgspec.structs.asdict(patch).items()
            if v is not None and k != "instanceRefillPerMinute"
        }
        updated = msgspec.structs.replace(current, **changes)
        check_ratelimit(updated)
        await history.record("ratelimit", current, updated)
        await configrows.store(configrows.RATELIMIT, msgspec.to_builtins(updated))
        await self.rt.config.set_ratelimit(updated)
        await self.rt.config.announce("config", scope="ratelimit")
        return updated


def weight_record(config: RateLimitConfig, instance: str) -> WeightRecord:
    return WeightRecord(
        instance=instance,
        weight=ratelimit.weight_of(config, instance),
        priority=ratelimit.priority_of(config, instance),
    )


def check_ratelimit(value: RateLimitConfig) -> None:
    for field, rule in ratelimit.problems(value):
        raise FieldError(field, rule)
