"""The webhook config cache: re-read after its TTL even when no announcement arrives."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel

from fila.configstore import ConfigStore
from fila.keys import Keys
from fila.models import WebhookConfig, WebhookTarget
from fila.settings import Settings
from simulator.receiver import Receiver
from tests.support import wait_for
from tests.test_delivery import Spawn, audio, channel, fast, publish
from workers.webhook import Webhooks

__all__ = ["channel"]


async def test_config_is_cached_until_its_ttl(
    settings: Settings, redis: aioredis.Redis, keys: Keys
) -> None:
    now = [100.0]
    store = ConfigStore(redis, keys, settings)
    hooks = Webhooks(settings.replace(filter_cache_ttl_seconds=30.0), store, clock=lambda: now[0])
    first = WebhookConfig(principal=WebhookTarget(enabled=True, url="http://one.example/"))
    second = WebhookConfig(principal=WebhookTarget(enabled=True, url="http://two.example/"))
    try:
        await store.set_webhook(first)
        assert (await hooks.config()).principal.url == "http://one.example/"
        await store.set_webhook(second)  # not announced
        now[0] += 29.0
        assert (await hooks.config()).principal.url == "http://one.example/"
        now[0] += 1.0
        assert (await hooks.config()).principal.url == "http://two.example/"
        await store.set_webhook(first)
        hooks.invalidate()  # what an announcement does: at once
        assert (await hooks.config()).principal.url == "http://one.example/"
    finally:
        await hooks.aclose()


async def test_running_worker_picks_up_an_unannounced_webhook_change(
    settings: Settings,
    spawn: Spawn,
    channel: AbstractChannel,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    """No main webhook, a held message; the config is stored but never announced."""
    async with Receiver(secret=settings.webhook_secret) as receiver:
        worker = spawn(["worker", "delivery"], fast(settings, filter_cache_ttl_seconds=0.5))
        item = audio("inst-ttl", 1)
        await publish(channel, item)
        await wait_for(lambda: "deliveries held" in worker.output(), timeout=60)

        await ConfigStore(redis, keys, settings).set_webhook(
            WebhookConfig(principal=WebhookTarget(enabled=True, url=receiver.url))
        )
        await wait_for(lambda: receiver.accepted(), timeout=60)
        assert [d.webhook_id for d in receiver.accepted()] == [item.id]


class SlowStore(ConfigStore):
    """Holds each webhook read, after it has read Redis, until the test lets it go."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read = asyncio.Event()
        self.release = asyncio.Event()

    async def webhook(self) -> WebhookConfig:
        value = await super().webhook()
        self.read.set()
        await self.release.wait()
        return value


async def test_a_change_announced_during_a_read_is_not_hidden_by_it(
    settings: Settings, redis: aioredis.Redis, keys: Keys
) -> None:
    store = SlowStore(redis, keys, settings)
    hooks = Webhooks(settings.replace(filter_cache_ttl_seconds=300.0), store)
    old = WebhookConfig(principal=WebhookTarget(enabled=True, url="http://old.example/"))
    new = WebhookConfig(principal=WebhookTarget(enabled=True, url="http://new.example/"))
    try:
        await store.set_webhook(old)
        reading = asyncio.create_task(hooks.config())
        await store.read.wait()  # the old value is read, not yet cached
        await store.set_webhook(new)
        hooks.invalidate()  # the announcement arrives while the read is in flight
        store.release.set()
        assert (await reading).principal.url == "http://old.example/"  # it was in flight
        assert (await hooks.config()).principal.url == "http://new.example/"
    finally:
        await hooks.aclose()
