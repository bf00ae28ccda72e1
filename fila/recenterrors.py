"""The latest `queue.error` reasons, kept in Redis for the overview (a capped list, newest first).

Recorded where every `queue.error` passes, whichever worker raised it: the monitoring sender.
"""

from __future__ import annotations

import time

import msgspec
import redis.asyncio as aioredis

from fila.keys import Keys
from fila.models import MonitoringEvent
from fila.views import RecentError

__all__ = ["RecentError", "RecentErrors"]

KEEP = 50
"""Entries kept; the overview shows the newest few."""


class RecentErrors:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.key = keys.recent_errors

    async def record(self, event: MonitoringEvent) -> None:
        """Best effort: a Redis fault here must never hold a monitoring event back."""
        error = str(event.data.get("error") or event.data.get("reason") or "unknown error")
        entry = RecentError(at=time.time(), instance=event.instance, error=error[:200])
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(self.key, msgspec.json.encode(entry))
        pipe.ltrim(self.key, 0, KEEP - 1)
        await pipe.execute()

    async def latest(self, count: int = 8) -> list[RecentError]:
        raws = await self.redis.lrange(self.key, 0, count - 1)
        out = []
        for raw in raws:
            try:
                out.append(msgspec.json.decode(raw, type=RecentError))
            except msgspec.DecodeError:
                continue
        return out
