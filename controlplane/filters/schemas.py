"""Bodies of the audio filter routes (camelCase, as the contract)."""

from __future__ import annotations

import msgspec

from fila.audiofilter import MaxSeconds, MinSeconds


class AudioFilterBody(msgspec.Struct, kw_only=True):
    minDurationSeconds: MinSeconds
    maxDurationSeconds: MaxSeconds
    """At least minDurationSeconds (a rule across fields: refused with a 400 naming it)."""
    enabled: bool


class AudioFilterRecord(msgspec.Struct, kw_only=True):
    """An instance's stored filter, as PUT returns it."""

    id: int
    instanceName: str
    minDurationSeconds: int
    maxDurationSeconds: int
    enabled: bool
    createdAt: str
    updatedAt: str


class BulkFilterBody(msgspec.Struct, kw_only=True):
    minDurationSeconds: MinSeconds
    maxDurationSeconds: MaxSeconds
    enabled: bool
    instances: list[str] | None = None
    """None: every instance seen or configured."""


class BulkResult(msgspec.Struct, kw_only=True):
    updated: int


class EmergencyBody(msgspec.Struct, kw_only=True):
    enabled: bool
    minDurationSeconds: MinSeconds = 3
    maxDurationSeconds: MaxSeconds = 7200
    reason: str = ""
