"""Bodies of the S3 cleanup routes."""

from __future__ import annotations

from typing import Annotated

import msgspec

from controlplane.validation import HHMM, RETENTION_DAYS_MAX, TIMEZONES

DailyTime = Annotated[str, msgspec.Meta(pattern=HHMM)]
Timezone = Annotated[str, msgspec.Meta(extra_json_schema={"enum": TIMEZONES})]
"""What `controlplane.validation.timezone` accepts: this host's IANA names."""


class Schedule(msgspec.Struct, kw_only=True):
    enabled: bool
    retentionDays: int
    dailyTime: str
    timezone: str


class SchedulePatch(msgspec.Struct, kw_only=True):
    """Partial: only the fields given change."""

    enabled: bool | None = None
    retentionDays: Annotated[int, msgspec.Meta(ge=1, le=RETENTION_DAYS_MAX)] | None = None
    dailyTime: DailyTime | None = None
    timezone: Timezone | None = None


class RunResult(msgspec.Struct, kw_only=True):
    success: bool
    deletedCount: int
    errorCount: int
    executedAt: str
    scannedCount: int = 0


class LastCleanup(msgspec.Struct, kw_only=True):
    timestamp: str
    deletedCount: int
    errorCount: int


class Progress(msgspec.Struct, kw_only=True):
    scanned: int
    deleted: int
    errors: int


class Status(msgspec.Struct, kw_only=True):
    enabled: bool
    nextExecution: str | None
    """ISO 8601 with the schedule's timezone offset; null when disabled."""
    retentionDays: int
    lastCleanup: LastCleanup | None
    running: Progress | None = None
    dailyTime: str = "03:00"
    timezone: str = "America/Sao_Paulo"
