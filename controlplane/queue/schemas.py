"""Bodies of the queue routes."""

from __future__ import annotations

from typing import Literal

import msgspec

from fila.views import RateLimitStatus, WeightRecord

__all__ = ["WeightRecord"]


class AudioFilterStats(msgspec.Struct, kw_only=True):
    tooShort: int
    tooLong: int
    processed: int


class QueueStats(msgspec.Struct, kw_only=True):
    queueSize: int
    processedToday: int
    rateLimitStatus: RateLimitStatus
    audioFilterStats: AudioFilterStats


class ControlBody(msgspec.Struct, kw_only=True):
    role: Literal["ingest", "delivery"] | None = None


class ControlResult(msgspec.Struct, kw_only=True):
    success: bool
    seq: int


class RateLimitPatch(msgspec.Struct, kw_only=True):
    """Partial: only the fields given change."""

    capacity: int | None = None
    refillPerMinute: float | None = None
    policy: Literal["reject", "defer"] | None = None
    reservePercent: int | None = None
    instanceCapacity: int | None = None
    activeWindowSeconds: int | None = None
    weights: dict[str, int] | None = None
    """Replaces every weight at once; `PUT /instance/{instance}/weight` changes one."""
    instanceRefillPerMinute: float | None = None
    """Retired (the share follows the active instances); given, it is refused with a 400."""


class WeightBody(msgspec.Struct, kw_only=True):
    weight: int
    """1-10: the instance's share under contention and its priority on global.messages."""
