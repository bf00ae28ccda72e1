"""At start-up the Redis mirror is rebuilt from PostgreSQL, the durable record."""

from __future__ import annotations

import msgspec

from controlplane import configlock, configrows
from controlplane.configlock import config_write
from controlplane.filters.service import FilterService
from controlplane.runtime import Runtime
from controlplane.webhooks.service import WebhookService
from fila.audiofilter import EmergencyFilter
from fila.models import RateLimitConfig


async def mirror_config(rt: Runtime) -> None:
    """Each document read and mirrored under its write lock: a write landing meanwhile on another
    replica is mirrored after this, never overwritten by an older read."""
    async with config_write(configlock.FILTERS):
        await rt.config.set_filters(await FilterService(rt).all())
    async with config_write(configlock.WEBHOOK):
        webhook = await WebhookService(rt).stored()
        if webhook is not None:
            await rt.config.set_webhook(webhook)
    async with config_write(configlock.RATELIMIT):
        ratelimit = await configrows.load(configrows.RATELIMIT)
        if ratelimit is not None:
            await rt.config.set_ratelimit(msgspec.convert(ratelimit, RateLimitConfig))
    async with config_write(configlock.EMERGENCY):
        emergency = await configrows.load(configrows.EMERGENCY)
        if emergency is not None:
            await rt.config.set_emergency(msgspec.convert(emergency, EmergencyFilter))
    await rt.config.announce("config", scope="all")
