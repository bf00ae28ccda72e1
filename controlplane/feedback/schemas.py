"""Bodies and answers of the /process routes (camelCase, as the contract)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

FinishStatus = Literal["success", "error", "aborted"]
NotBlank = Annotated[str, msgspec.Meta(pattern=r"\S")]
"""Ids must hold something besides spaces (the service's `_require`)."""


class StartBody(msgspec.Struct, kw_only=True):
    instance: NotBlank
    chatId: NotBlank
    messageId: NotBlank
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
    instance: NotBlank
    chatId: NotBlank
    messageId: NotBlank
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
    pending: bool = False
    """True with 202: the final reaction (and text) were not sent within FINISH_WAIT_SECONDS;
    they go on in the background and /process/status lists the session in endingSessions."""


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


class EndingSession(msgspec.Struct, kw_only=True):
    """A finished session whose final reaction or text is still being sent (retried)."""

    sessionId: str
    instance: str
    chatId: str
    messageId: str
    status: str
    finalReaction: str
    reactionSent: bool
    textSent: bool
    """False also when there is no text to send (see `text`)."""
    text: bool
    """A text was asked for."""
    attempts: int
    """Ends tried so far; after the last one the session ends anyway (undelivered)."""


class StatusResult(msgspec.Struct, kw_only=True):
    activeSessionsCount: int
    activeSessions: list[ActiveSession]
    stats: FeedbackStats
    endingSessions: list[EndingSession] = msgspec.field(default_factory=list)


class DeleteResult(msgspec.Struct, kw_only=True):
    success: bool
    sessionId: str
    cleanedAt: str


class OrphansResult(msgspec.Struct, kw_only=True):
    removed: int
