"""Bodies and answers of the /process routes (camelCase, as the contract)."""

from __future__ import annotations

from typing import Literal

import msgspec

FinishStatus = Literal["success", "error", "aborted"]


class StartBody(msgspec.Struct, kw_only=True):
    instance: str
    chatId: str
    messageId: str
    processType: str = ""
    fromMe: bool = False
    """True for a voice note the instance's own phone sent: the reaction's key must say so."""


class StartResult(msgspec.Struct, kw_only=True):
    success: bool
    sessionId: str
    startedAt: str
    timeoutAt: str
    alreadyActive: bool = False
    """True when a session with this id was already running (start is idempotent)."""


class FinishBody(msgspec.Struct, kw_only=True):
    instance: str
    chatId: str
    messageId: str
    status: FinishStatus
    texto: str | None = None


class FinishResult(msgspec.Struct, kw_only=True):
    success: bool
    sessionId: str
    status: FinishStatus
    finalReaction: str
    textSent: bool
    finishedAt: str
    durationMs: int


class ActiveSession(msgspec.Struct, kw_only=True):
    sessionId: str
    instance: str
    chatId: str
    messageId: str
    processType: str
    fromMe: bool = False
    startTime: int
    """Epoch ms."""
    timeoutAt: int
    """Epoch ms."""
    currentReaction: int | None
    """Index in the reaction cycle of the last reaction sent (0 = 🔄, 1 = ⏳); None before it."""
    currentEmoji: str | None
    runningFor: int
    """Milliseconds since start."""


class FeedbackStats(msgspec.Struct, kw_only=True):
    activeCount: int
    totalStarted: int
    averageProcessingTime: int
    """Mean ms from start to finish (or timeout) over finished sessions."""
    finished: int = 0
    timedOut: int = 0
    byStatus: dict[str, int] = msgspec.field(default_factory=dict)


class StatusResult(msgspec.Struct, kw_only=True):
    activeSessionsCount: int
    activeSessions: list[ActiveSession]
    stats: FeedbackStats


class DeleteResult(msgspec.Struct, kw_only=True):
    success: bool
    sessionId: str
    cleanedAt: str


class OrphansResult(msgspec.Struct, kw_only=True):
    removed: int
