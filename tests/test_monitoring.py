"""The monitoring webhook: queue.stats and filter.applied from one elected delivery worker."""

from __future__ import annotations

import datetime as dt

import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel
from standardwebhooks.webhooks import Webhook

from fila import stats
from fila.keys import Keys
from fila.settings import Settings
from simulator.receiver import Receiver
from tests.support import wait_for
from tests.test_delivery import Spawn, audio, channel, fast, publish

__all__ = ["channel"]


async def test_queue_stats_and_filter_applied_reach_the_monitoring_receiver(
    settings: Settings,
    spawn: Spawn,
    channel: AbstractChannel,
    redis: aioredis.Redis,
    keys: Keys,
) -> None:
    counters = stats.Counters(redis, keys, settings.timezone)
    await counters.bump("inst-a", {stats.TOO_SHORT: 2, stats.PROCESSED: 3})
    await counters.bump("inst-b", {stats.TOO_LONG: 1})
    # Two queued messages nobody delivers yet (no main webhook): queueSize sees them.
    await publish(channel, audio("inst-a", 1), audio("inst-a", 2))

    async with Receiver(secret=settings.webhook_secret) as monitor:
        worker_settings = fast(
            settings, webhook_monitoring_url=monitor.url, stats_interval_seconds=0.5
        )
        # Two workers: only the lock holder reports (one filter.applied per change below).
        spawn(["worker", "delivery"], worker_settings)
        spawn(["worker", "delivery"], worker_settings)

        await wait_for(lambda: monitor.by_event("filter.applied"), timeout=60)
        # The held messages are briefly unacked (not counted) each time a worker looks again.
        await wait_for(
            lambda: [e for e in monitor.by_event("queue.stats") if e["data"]["queueSize"] == 2],
            timeout=60,
        )
        stats_event = next(
            e for e in monitor.by_event("queue.stats") if e["data"]["queueSize"] == 2
        )
        assert set(stats_event) == {"event", "timestamp", "data", "server_url"}
        assert stats_event["server_url"] == settings.server_url
        assert dt.datetime.fromisoformat(stats_event["timestamp"]).tzinfo is not None
        data = stats_event["data"]
        assert {"queueSize", "processedCount", "audioFilterStats"} <= set(data)
        assert data["processedCount"] == 0
        assert data["audioFilterStats"] == {"tooShort": 2, "tooLong": 1, "processed": 3}

        [applied] = monitor.by_event("filter.applied")
        assert applied["data"] == {
            "tooShort": 2,
            "tooLong": 1,
            "processed": 3,
            "byInstance": {
                "inst-a": {"tooShort": 2, "tooLong": 0, "processed": 3},
                "inst-b": {"tooShort": 0, "tooLong": 1, "processed": 0},
            },
        }
        delivery = next(d for d in monitor.deliveries if d.json == applied)
        Webhook(settings.webhook_secret).verify(delivery.body, delivery.headers)

        # Only what moved since the last report is sent next time.
        await counters.bump("inst-b", {stats.TOO_SHORT: 1})
        await wait_for(lambda: len(monitor.by_event("filter.applied")) == 2, timeout=60)
        assert monitor.by_event("filter.applied")[1]["data"] == {
            "tooShort": 1,
            "tooLong": 0,
            "processed": 0,
            "byInstance": {"inst-b": {"tooShort": 1, "tooLong": 0, "processed": 0}},
        }
