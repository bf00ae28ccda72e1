"""Finished sessions written to PostgreSQL (`FeedbackStat`) for history; Redis stays the source
of the live stats, so a missing table or a database hiccup only costs a log line."""

from __future__ import annotations

import asyncio
import datetime as dt

from fila import logging as flog

log = flog.get("controlplane.feedback.records")

RECORD_TIMEOUT = 5.0
"""A finish has already been sent and completed when this runs: a stalled database must not
hold the request."""


def _at(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


async def record_finished(
    *,
    session_id: str,
    instance: str,
    process_type: str,
    status: str,
    started_ms: int,
    finished_ms: int,
    duration_ms: int,
) -> bool:
    try:
        from controlplane.tables import FeedbackStat
    except ImportError:
        return False
    try:
        async with asyncio.timeout(RECORD_TIMEOUT):
            await FeedbackStat.insert(
                FeedbackStat(
                    session_id=session_id,
                    instance=instance,
                    process_type=process_type,
                    status=status,
                    started_at=_at(started_ms),
                    finished_at=_at(finished_ms),
                    duration_ms=duration_ms,
                )
            )
    except Exception as exc:
        log.warning("feedback stat not recorded", session_id=session_id, error=str(exc))
        return False
    return True
