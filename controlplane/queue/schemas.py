"""Bodies of the queue routes."""

from __future__ import annotations

from typing import Literal

import msgspec

from fila.views import RateLimitStatus


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
    instanceCapacity: int | None = None
    instanceRefillPerMinute: float | None = None
