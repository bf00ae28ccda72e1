"""Feedback sessions' REST operations: start, finish, delete, status and orphan clean-up.

The loop that sends the reactions is `controlplane.feedback.scheduler`; the service is one with
this replica's loop, which `start()` starts and `stop()` stops.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import redis.asyncio as aioredis

from controlplane.errors import Conflict, DependencyDown, FieldError, NotFound
from controlplane.feedback import schemas
from controlplane.feedback.scheduler import FeedbackScheduler, now_ms
from controlplane.feedback.store import Session, session_id
from fila import logging as flog
from fila.settings import Settings

log = flog.get("controlplane.feedback")

FINISH_WAIT_SECONDS = 5.0
"""Longest /process/finish waits for its final reaction and text: past it, 202 and they go on
in the background (Evolution API down would otherwise hold the request for minutes)."""


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


def _require(field: str, value: str) -> str:
    if not value.strip():
        raise FieldError(field, "must not be empty")
    return value


class FeedbackService(FeedbackScheduler):
    """The /process operations on the sessions this replica's loop drives."""

    def __init__(self, settings: Settings, redis: aioredis.Redis) -> None:
        super().__init__(settings, redis)
        self.timeout_ms = max(1, int(settings.feedback_timeout_seconds * 1000))
        self.finals = {
            "success": settings.feedback_success_emoji,
            "error": settings.feedback_error_emoji,
            "aborted": settings.feedback_aborted_emoji,
        }

    async def start_session(self, body: schemas.StartBody) -> schemas.StartResult:
        instance = _require("instance", body.instance)
        chat_id = _require("chatId", body.chatId)
        message_id = _require("messageId", body.messageId)
        sid = session_id(instance, chat_id, message_id)
        now = now_ms()
        session = Session(
            id=sid,
            instance=instance,
            chatId=chat_id,
            messageId=message_id,
            processType=body.processType,
            fromMe=body.fromMe,
            startedAt=now,
            timeoutAt=now + self.timeout_ms,
            state="active",
        )
        outcome = await self.store.create(session)
        if outcome == "created":
            self.wake()
            log.info("feedback session started", session_id=sid, process_type=body.processType)
            return schemas.StartResult(
                success=True, sessionId=sid, startedAt=_iso(now), timeoutAt=_iso(session.timeoutAt)
            )
        existing = await self.store.get(sid)
        if outcome != "active" or existing is None:
            raise Conflict(f"session {sid} is finishing; start it again once it has ended")
        return schemas.StartResult(
            success=True,
            sessionId=sid,
            startedAt=_iso(existing.startedAt),
            timeoutAt=_iso(existing.timeoutAt),
            alreadyActive=True,
        )

    async def finish_session(self, body: schemas.FinishBody) -> schemas.FinishResult:
        sid = session_id(
            _require("instance", body.instance),
            _require("chatId", body.chatId),
            _require("messageId", body.messageId),
        )
        reaction = self.finals[body.status]
        text = body.texto or ""
        outcome = await self.store.begin_end(
            sid, body.status, reaction, text, now_ms(), self.end_lease_ms
        )
        if outcome == "missing":
            raise NotFound(f"sessionId: no active session {sid}")
        if outcome != "ok":
            raise Conflict(f"session {sid} is already finishing")
        # Shielded: a client hanging up (or the wait running out) must not cut the end in half.
        task = self.end_soon(sid)
        try:
            done = await asyncio.wait_for(asyncio.shield(task), FINISH_WAIT_SECONDS)
        except TimeoutError:
            session = await self.store.get(sid)
            now = now_ms()
            return schemas.FinishResult(
                success=True,
                sessionId=sid,
                status=body.status,
                finalReaction=reaction,
                textSent=False,
                finishedAt=_iso(now),
                durationMs=now - session.startedAt if session else 0,
                pending=True,
            )
        if done is None:
            raise DependencyDown("evolution-api", "final reaction not delivered yet; retried")
        return schemas.FinishResult(
            success=True,
            sessionId=sid,
            status=body.status,
            finalReaction=reaction,
            textSent=bool(text),
            finishedAt=_iso(done[0]),
            durationMs=done[1],
        )

    async def delete_session(self, sid: str) -> schemas.DeleteResult:
        if not await self.store.remove(sid, "deleted"):
            raise NotFound(f"sessionId: no session {sid}")
        log.info("feedback session deleted", session_id=sid)
        return schemas.DeleteResult(success=True, sessionId=sid, cleanedAt=_iso(now_ms()))

    async def status(self) -> schemas.StatusResult:
        now = now_ms()
        scheduled = await self.store.scheduled()
        active: list[schemas.ActiveSession] = []
        ending: list[schemas.EndingSession] = []
        for sid, s in await self.store.load(sorted(scheduled)):
            if s is not None and s.state == "ending":
                ending.append(
                    schemas.EndingSession(
                        sessionId=sid,
                        instance=s.instance,
                        chatId=s.chatId,
                        messageId=s.messageId,
                        status=s.endStatus,
                        finalReaction=s.endReaction,
                        reactionSent=s.endReactionSent,
                        textSent=s.endTextSent,
                        text=bool(s.endText),
                        attempts=s.endAttempts,
                    )
                )
            if s is None or s.state != "active":
                continue
            current = s.currentReaction
            active.append(
                schemas.ActiveSession(
                    sessionId=sid,
                    instance=s.instance,
                    chatId=s.chatId,
                    messageId=s.messageId,
                    processType=s.processType,
                    fromMe=s.fromMe,
                    startTime=s.startedAt,
                    timeoutAt=s.timeoutAt,
                    currentReaction=current,
                    currentEmoji=self.cycle[current % len(self.cycle)]
                    if current is not None
                    else None,
                    runningFor=max(0, now - s.startedAt),
                )
            )
        raw = await self.store.stats()
        finished = raw.get("finished", 0)
        by_status = {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("status:")}
        return schemas.StatusResult(
            activeSessionsCount=len(active),
            activeSessions=active,
            stats=schemas.FeedbackStats(
                activeCount=len(active),
                totalStarted=raw.get("totalStarted", 0),
                averageProcessingTime=(raw.get("totalDurationMs", 0) // finished)
                if finished
                else 0,
                finished=finished,
                timedOut=by_status.get("timeout", 0),
                byStatus=by_status,
            ),
            endingSessions=ending,
        )

    async def cleanup_orphans(self) -> schemas.OrphansResult:
        """End sessions nobody has driven for long, and drop half-written ones."""
        return schemas.OrphansResult(removed=await self.sweep_orphans())
