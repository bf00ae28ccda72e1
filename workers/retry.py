"""When and how long to wait before trying a delivery again (retry tiers, jitter, Retry-After)."""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import random
from collections.abc import Sequence
from typing import Literal

Verdict = Literal["delivered", "retry", "reject"]
MAX_RETRY_AFTER = 3600.0
"""A receiver cannot park a message longer than global.messages' own TTL."""

RETRY_AFTER_LADDER = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
"""Delays a Retry-After is rounded up to: whatever receivers ask, a few delay queues at most."""

JITTER_SLOTS = (0.8, 0.9, 1.0, 1.1, 1.2)
"""Each tier spreads its retries over a few fixed delays: jitter without a queue per message."""


def verdict(status: int | None) -> Verdict:
    """None is a connection error or timeout; 408, 429 and 5xx are worth another try."""
    if status is None or status in (408, 429) or status >= 500:
        return "retry"
    if 200 <= status < 300:
        return "delivered"
    return "reject"


def retry_after_seconds(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds asked for by a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


def rounded_up_ms(seconds: float, schedule: Sequence[float] = ()) -> int:
    """`seconds` (an hour at most) rounded up to a schedule tier or a ladder step, in ms."""
    wanted = min(seconds, MAX_RETRY_AFTER)
    steps = sorted({*schedule, *RETRY_AFTER_LADDER})
    return math.ceil(next((t for t in steps if t >= wanted), MAX_RETRY_AFTER) * 1000)


def delay_ms(
    schedule: list[float],
    attempts: int,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> int | None:
    """Delay before attempt `attempts + 1`, or None when the schedule is exhausted.

    A `Retry-After` is rounded up to the first tier or ladder step that honours it (an hour
    at most), so the number of delay queues stays bounded whatever receivers ask.
    """
    if attempts > len(schedule) or attempts < 1:
        return None
    tier = schedule[attempts - 1]
    if retry_after is not None:
        return rounded_up_ms(max(retry_after, tier), schedule)
    slot = (rng or random).choice(JITTER_SLOTS)
    return max(1, math.ceil(tier * 1000 * slot))
