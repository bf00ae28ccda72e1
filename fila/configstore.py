"""The effective configuration in Redis: written by the control plane, read by workers.

PostgreSQL is the durable record; this mirror is what the hot path reads, so workers need
neither the database nor the control plane to be up.
"""

from __future__ import annotations

import time
from typing import TypeVar

import msgspec
import redis.asyncio as aioredis

from fila.audiofilter import AudioFilter, EmergencyFilter
from fila.keys import Keys
from fila.models import (
    ConfigScope,
    ControlKind,
    ControlMessage,
    RateLimitConfig,
    WebhookConfig,
    WebhookTarget,
    encode,
)
from fila.settings import Settings

T = TypeVar("T")


def default_filter(settings: Settings) -> AudioFilter:
    return AudioFilter(
        minDurationSeconds=settings.audio_min_seconds,
        maxDurationSeconds=settings.audio_max_seconds,
        enabled=True,
    )


def default_ratelimit(settings: Settings) -> RateLimitConfig:
    return RateLimitConfig(
        capacity=settings.rate_capacity,
        refillPerMinute=settings.rate_refill_per_minute,
        policy=settings.rate_policy,
        reservePercent=settings.rate_reserve_percent,
        instanceCapacity=settings.rate_instance_capacity,
        activeWindowSeconds=settings.rate_active_window_seconds,
    )


def default_webhook(settings: Settings) -> WebhookConfig:
    return WebhookConfig(
        principal=WebhookTarget(
            enabled=bool(settings.webhook_principal_url), url=settings.webhook_principal_url
        ),
        monitoramento=WebhookTarget(
            enabled=bool(settings.webhook_monitoring_url), url=settings.webhook_monitoring_url
        ),
    )


def _decode(raw: bytes | str | None, kind: type[T], default: T) -> T:
    if raw is None:
        return default
    return msgspec.json.decode(raw, type=kind)


class ConfigStore:
    """Typed reads and writes of the effective configuration."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, settings: Settings) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings

    async def filter_for(self, instance: str) -> AudioFilter:
        raw = await self.redis.hget(self.keys.config_filters, instance)
        return _decode(raw, AudioFilter, default_filter(self.settings))

    async def all_filters(self) -> dict[str, AudioFilter]:
        raw = await self.redis.hgetall(self.keys.config_filters)
        return {
            (k.decode() if isinstance(k, bytes) else k): msgspec.json.decode(v, type=AudioFilter)
            for k, v in raw.items()
        }

    async def set_filter(self, instance: str, value: AudioFilter) -> None:
        await self.redis.hset(self.keys.config_filters, instance, encode(value))

    async def set_filters(self, values: dict[str, AudioFilter]) -> None:
        if values:
            pipe = self.redis.pipeline(transaction=True)
            for instance, value in values.items():
                pipe.hset(self.keys.config_filters, instance, encode(value))
            await pipe.execute()

    async def ratelimit(self) -> RateLimitConfig:
        raw = await self.redis.get(self.keys.config_ratelimit)
        return _decode(raw, RateLimitConfig, default_ratelimit(self.settings))

    async def set_ratelimit(self, value: RateLimitConfig) -> None:
        await self.redis.set(self.keys.config_ratelimit, encode(value))

    async def webhook(self) -> WebhookConfig:
        raw = await self.redis.get(self.keys.config_webhook)
        return _decode(raw, WebhookConfig, default_webhook(self.settings))

    async def set_webhook(self, value: WebhookConfig) -> None:
        await self.redis.set(self.keys.config_webhook, encode(value))

    async def emergency(self) -> EmergencyFilter:
        raw = await self.redis.get(self.keys.config_emergency)
        return _decode(raw, EmergencyFilter, EmergencyFilter())

    async def set_emergency(self, value: EmergencyFilter) -> None:
        await self.redis.set(self.keys.config_emergency, encode(value))

    async def announce(
        self,
        kind: ControlKind,
        scope: ConfigScope | None = None,
        instance: str | None = None,
        role: str | None = None,
        worker_id: str | None = None,
    ) -> ControlMessage:
        """Publish a control message on the bus; returns it with its sequence number."""
        seq = int(await self.redis.incr(self.keys.config_seq))
        msg = ControlMessage(
            seq=seq,
            kind=kind,
            scope=scope,
            instance=instance,
            role=role,  # type: ignore[arg-type]
            workerId=worker_id,
            sentAt=time.time(),
        )
        await self.redis.publish(self.keys.control_channel, encode(msg))
        return msg


def decode_control(raw: bytes | str) -> ControlMessage:
    return msgspec.json.decode(raw, type=ControlMessage)
