"""Per-process cache of the configuration the ingest hot path reads on every message.

Entries expire after `filter_cache_ttl_seconds` and are dropped at once when the control plane
announces a change, so a filter edit reaches every worker without a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fila.audiofilter import AudioFilter, EmergencyFilter, in_force
from fila.configstore import ConfigStore
from fila.models import ControlMessage, RateLimitConfig


class ConfigCache:
    """TTL cache over `ConfigStore` for filters, the emergency filter and the rate limit."""

    def __init__(
        self,
        store: ConfigStore,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._filters: dict[str, tuple[float, AudioFilter]] = {}
        self._emergency: tuple[float, EmergencyFilter] | None = None
        self._ratelimit: tuple[float, RateLimitConfig] | None = None
        self._generation = 0
        """Bumped by every invalidation: a read that started before one is not cached."""

    def _fresh(self, stamp: float) -> bool:
        return self._clock() - stamp < self._ttl

    async def filter_for(self, instance: str) -> AudioFilter:
        """The filter in force for `instance`: the emergency filter while it is enabled."""
        emergency = await self.emergency()
        cached = self._filters.get(instance)
        if cached and self._fresh(cached[0]):
            return in_force(cached[1], emergency)
        generation = self._generation
        value = await self._store.filter_for(instance)
        if generation == self._generation:
            self._filters[instance] = (self._clock(), value)
        return in_force(value, emergency)

    async def emergency(self) -> EmergencyFilter:
        if self._emergency and self._fresh(self._emergency[0]):
            return self._emergency[1]
        generation = self._generation
        value = await self._store.emergency()
        if generation == self._generation:
            self._emergency = (self._clock(), value)
        return value

    async def ratelimit(self) -> RateLimitConfig:
        if self._ratelimit and self._fresh(self._ratelimit[0]):
            return self._ratelimit[1]
        generation = self._generation
        value = await self._store.ratelimit()
        if generation == self._generation:
            self._ratelimit = (self._clock(), value)
        return value

    def invalidate(self, message: ControlMessage) -> None:
        """Forget what `message` says changed (instance-specific for filter edits)."""
        self._generation += 1
        scope = message.scope
        if scope in ("filters", "all", None):
            if message.instance and scope == "filters":
                self._filters.pop(message.instance, None)
            else:
                self._filters.clear()
        if scope in ("emergency", "all", None):
            self._emergency = None
        if scope in ("ratelimit", "all", None):
            self._ratelimit = None
