"""At start-up the Redis mirror is rebuilt from PostgreSQL, the durable record."""

from __future__ import annotations

import msgspec

from controlplane import configrows
from controlplane.filters.service import FilterService
from controlplane.runtime import Runtime
from controlplane.webhooks.service import WebhookService
from fila.models import EmergencyFilter, RateLimitConfig


async def mirror_config(rt: Runtime) -> None:
    filters = await FilterService(rt).all()
    await rt.config.set_filters(filters)
    webhook = await WebhookService(rt).stored()
    if webhook is not None:
        await rt.config.set_webhook(webhook)
    ratelimit = await configrows.load(configrows.RATELIMIT)
    if ratelimit is not None:
        await rt.config.set_ratelimit(msgspec.convert(ratelimit, RateLimitConfig))
    emergency = await configrows.load(configrows.EMERGENCY)
    if emergency is not None:
        await rt.config.set_emergency(msgspec.convert(emergency, EmergencyFilter))
    await rt.config.announce("config", scope="all")
