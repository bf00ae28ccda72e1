"""Bodies of the queue routes."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from fila.ratelimit import RESERVE_PERCENT_MAX, WEIGHT_MAX, WEIGHT_MIN
from fila.views import RateLimitStatus, WeightRecord

__all__ = ["WeightRecord"]

Weight = Annotated[int, msgspec.Meta(ge=WEIGHT_MIN, le=WEIGHT_MAX)]
"""fila.ratelimit's weight bounds, for the decoder and the OpenAPI document alike."""
AtLeastOne = Annotated[int, msgspec.Meta(ge=1)]


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

    capacity: AtLeastOne | None = None
    refillPerMinute: Annotated[float, msgspec.Meta(gt=0)] | None = None
    policy: Literal["reject", "defer"] | None = None
    reservePercent: Annotated[int, msgspec.Meta(ge=0, le=RESERVE_PERCENT_MAX)] | None = None
    instanceCapacity: AtLeastOne | None = None
    activeWindowSeconds: AtLeastOne | None = None
    weights: dict[str, Weight] | None = None
    """Replaces every weight at once; `PUT /instance/{instance}/weight` changes one."""
    instanceRefillPerMinute: Annotated[
        float | None, msgspec.Meta(extra_json_schema={"type": "null", "deprecated": True})
    ] = None
    """Retired (the share follows the active instances); given, it is refused with a 400."""


class WeightBody(msgspec.Struct, kw_only=True):
    weight: Weight
    """1-10: the instance's share under contention and its priority on global.messages."""
