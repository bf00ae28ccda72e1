"""Dependency holds: what a worker reports while it waits out a shared dependency's outage.

One definition for the worker that holds, the control plane that shows it (`/workers`,
`/metrics`, overview alerts) and the TUI.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Final, Literal

import msgspec

Dependency = Literal["s3", "redis", "evolution", "receiver"]
DEPENDENCIES: tuple[Dependency, ...] = ("s3", "redis", "evolution", "receiver")

HOLD_EVENT: Final = "queue.hold"
"""Monitoring event sent once when a hold starts (`data.state` started) and once when it ends."""


class DependencyHold(msgspec.Struct, kw_only=True, frozen=True):
    """One dependency a worker is waiting for; its queues are not consumed meanwhile."""

    dependency: Dependency
    since: float
    """Epoch seconds of the failure that started the hold."""
    detail: str = ""
    """The last error seen (what an operator needs to find the fault)."""


def hold_text(hold: DependencyHold, timezone: str) -> str:
    """The one line operators see: `holding: s3 unreachable since 14:02`."""
    try:
        zone: dt.tzinfo = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC
    at = dt.datetime.fromtimestamp(hold.since, zone).strftime("%H:%M")
    return f"holding: {hold.dependency} unreachable since {at}"
