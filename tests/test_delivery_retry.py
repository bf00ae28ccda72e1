"""Retry tiers, jitter and Retry-After: the decisions behind each delay queue."""

from __future__ import annotations

import datetime as dt
import random

from workers import retry

SCHEDULE = [1.0, 5.0, 30.0]


def test_verdicts() -> None:
    assert retry.verdict(200) == retry.verdict(204) == "delivered"
    for status in (None, 408, 429, 500, 502, 503):
        assert retry.verdict(status) == "retry"
    for status in (301, 400, 401, 404, 422):
        assert retry.verdict(status) == "reject"


def test_tiers_with_jitter_then_exhausted() -> None:
    rng = random.Random(7)
    seen = {retry.delay_ms(SCHEDULE, 1, rng=rng) for _ in range(200)}
    assert seen == {800, 900, 1000, 1100, 1200}
    assert 4000 <= (retry.delay_ms(SCHEDULE, 2, rng=rng) or 0) <= 6000
    assert 24000 <= (retry.delay_ms(SCHEDULE, 3, rng=rng) or 0) <= 36000
    assert retry.delay_ms(SCHEDULE, 4) is None


def test_retry_after_rounds_up_to_a_tier() -> None:
    assert retry.delay_ms(SCHEDULE, 1, retry_after=3) == 5000
    assert retry.delay_ms(SCHEDULE, 1, retry_after=0.5) == 1000
    assert retry.delay_ms(SCHEDULE, 2, retry_after=2) == 5000
    assert retry.delay_ms(SCHEDULE, 1, retry_after=90.2) == 120_000
    assert retry.delay_ms(SCHEDULE, 1, retry_after=31) == 60_000
    assert retry.delay_ms(SCHEDULE, 1, retry_after=1801) == 3_600_000
    assert retry.delay_ms(SCHEDULE, 1, retry_after=10**6) == 3_600_000
    assert retry.delay_ms([7.0], 1, retry_after=6) == 7000  # the schedule's own tiers count too


def test_retry_after_makes_few_delay_queues() -> None:
    """Every Retry-After from 0 s to over an hour lands on the ladder or a schedule tier."""
    delays = {
        retry.delay_ms(SCHEDULE, 1, retry_after=tenths / 10) for tenths in range(0, 40_000, 7)
    }
    allowed = {int(s * 1000) for s in (*SCHEDULE, *retry.RETRY_AFTER_LADDER)}
    assert delays <= allowed
    assert len(delays) <= len(allowed) == 13


def test_retry_after_header_forms() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert retry.retry_after_seconds("120") == 120
    assert retry.retry_after_seconds("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30
    assert retry.retry_after_seconds("soon") is None
    assert retry.retry_after_seconds(None) is None
