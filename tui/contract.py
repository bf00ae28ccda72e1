"""Contract bodies the TUI reads that have no shared Struct in `fila/` (decode side only).

Fields follow /work/shared/contract.md; anything the TUI does not show is left out so that
added fields never break decoding.
"""

from __future__ import annotations

import msgspec

from fila.audiofilter import AudioFilter
from fila.models import WebhookConfig


class FeedbackSession(msgspec.Struct, kw_only=True):
    sessionId: str
    instance: str
    chatId: str
    messageId: str
    processType: str
    startTime: float | str = 0
    timeoutAt: float | str = 0
    currentReaction: str | int | None = None
    """The emoji shown now, or its index in the cycle; None before the first reaction went out."""
    runningFor: float = 0
    """Milliseconds."""


class FeedbackStats(msgspec.Struct, kw_only=True):
    activeCount: int = 0
    totalStarted: int = 0
    averageProcessingTime: float = 0


class ProcessStatus(msgspec.Struct, kw_only=True):
    """`GET /process/status`."""

    activeSessionsCount: int = 0
    activeSessions: list[FeedbackSession] = msgspec.field(default_factory=list)
    stats: FeedbackStats = msgspec.field(default_factory=FeedbackStats)


class CleanupSchedule(msgspec.Struct, kw_only=True):
    """`GET|PUT /cleanup/schedule`."""

    enabled: bool = True
    retentionDays: int = 7
    dailyTime: str = "03:00"
    timezone: str = "America/Sao_Paulo"


class LastCleanup(msgspec.Struct, kw_only=True):
    timestamp: str
    deletedCount: int = 0
    errorCount: int = 0


class CleanupProgress(msgspec.Struct, kw_only=True):
    scanned: int = 0
    deleted: int = 0
    errors: int = 0


class CleanupStatus(msgspec.Struct, kw_only=True):
    """`GET /cleanup/status` (with the operator `running` progress)."""

    enabled: bool = True
    nextExecution: str | None = None
    retentionDays: int = 7
    lastCleanup: LastCleanup | None = None
    running: CleanupProgress | None = None


class CleanupResult(msgspec.Struct, kw_only=True):
    """`POST /cleanup/execute`."""

    success: bool
    deletedCount: int = 0
    errorCount: int = 0
    executedAt: str = ""


class WebhookConfigData(WebhookConfig, kw_only=True):
    createdAt: str | None = None
    updatedAt: str | None = None


class WebhookConfigResponse(msgspec.Struct, kw_only=True):
    """`GET|PUT /webhook/global/config`."""

    success: bool = True
    data: WebhookConfigData = msgspec.field(default_factory=WebhookConfigData)


class WebhookTestData(msgspec.Struct, kw_only=True):
    url: str = ""
    success: bool = False
    statusCode: int | None = None
    statusText: str = ""
    responseTime: str = ""
    testedAt: str = ""
    error: str | None = None
    """Why no answer came (connection refused, timeout…)."""


class WebhookTestResponse(msgspec.Struct, kw_only=True):
    """`POST /webhook/global/test`."""

    success: bool = False
    data: WebhookTestData = msgspec.field(default_factory=WebhookTestData)


class FilterRecord(AudioFilter, kw_only=True):
    """`PUT /instance/{instance}/filters/audio`."""

    instanceName: str = ""


class Updated(msgspec.Struct, kw_only=True):
    updated: int


class ControlAck(msgspec.Struct, kw_only=True):
    success: bool = True
    seq: int = 0


class SessionCancelled(msgspec.Struct, kw_only=True):
    success: bool = True
    sessionId: str = ""
