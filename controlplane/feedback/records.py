"""Finished sessions written to PostgreSQL (`FeedbackStat`) for history; Redis stays the source
of the live stats, so a missing table or a database hiccup only costs a log line."""

from __future__ import annotations

import asyncio
import datetime as dt

from controlplane.feedback.store import Completed, Session
from controlplane.tables import FeedbackStat
from fila import logging as flog

log = flog.get("controlplane.feedback.records")

RECORD_TIMEOUT = 5.0
"""A finish has already been sent and completed when this runs: a stalled database must not
hold the request."""


def _at(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


async def record_finished(session_id: str, session: Session, done: Completed) -> bool:
    """One row for a session that ended (with its end status) as `done` says."""
    try:
        async with asyncio.timeout(RECORD_TIMEOUT):
            await FeedbackStat.insert(
                FeedbackStat(
                    session_id=session_id,
                    instance=session.instance,
                    process_type=session.processType,
                    status=session.endStatus,
                    started_at=_at(done.startedAt),
                    finished_at=_at(done.finishedAt),
                    duration_ms=done.durationMs,
                )
            )
    except Exception as exc:
        log.warning("feedback stat not recorded", session_id=session_id, error=str(exc))
        return False
    return True
