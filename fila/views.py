"""Response bodies of the operator routes (beyond the contract) that the TUI reads.

The control plane encodes these and the TUI decodes them: one definition for both ends.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from fila.models import WorkerInfo


class InstanceRow(msgspec.Struct, kw_only=True):
    """One instance in the fleet table (`GET /fleet/instances`)."""

    instance: str
    received: int = 0
    processed: int = 0
    tooShort: int = 0
    tooLong: int = 0
    rateLimited: int = 0
    deferred: int = 0
    ingestFailed: int = 0
    delivered: int = 0
    deliveryFailed: int = 0
    tokens: float = 0.0
    """Tokens left in the instance's fair-share bucket (binds only while the global is short)."""
    tokenCapacity: int = 0
    weight: int = 1
    sharePerMinute: float = 0.0
    """Its share of the global refill now: refill × weight ÷ the active instances' weight."""
    minDurationSeconds: int = 3
    maxDurationSeconds: int = 7200
    enabled: bool = True
    lastSeen: float | None = None
    """Epoch seconds of the last event, None if never seen."""


class InstancesView(msgspec.Struct, kw_only=True):
    """A page of the fleet table (the whole fleet when no limit was asked)."""

    instances: list[InstanceRow]
    generatedAt: float
    total: int = 0
    """Instances in the live set (seen within FILA_FLEET_IDLE_SECONDS, or configured)."""
    matched: int = 0
    """Of those, how many the filter `q` kept."""
    offset: int = 0
    limit: int | None = None
    q: str = ""
    sort: str = "instance"
    order: Literal["asc", "desc"] = "asc"


class RateLimitStatus(msgspec.Struct, kw_only=True):
    tokens: float
    capacity: int
    refillRate: str
    """`"500/min"`, as in the contract."""
    policy: Literal["reject", "defer"] = "reject"


class DependencyHealth(msgspec.Struct, kw_only=True):
    name: str
    ok: bool
    detail: str = ""


class Alert(msgspec.Struct, kw_only=True):
    level: Literal["warning", "critical"]
    code: str
    """queue_growing, bucket_empty, worker_missing, circuit_open, dependency_down…"""
    message: str


class InstanceCount(msgspec.Struct, kw_only=True):
    instance: str
    count: int


class Busiest(msgspec.Struct, kw_only=True):
    """The instances with the most refused, filtered and failed voice notes (top 5 each)."""

    rejected: list[InstanceCount] = msgspec.field(default_factory=list)
    filtered: list[InstanceCount] = msgspec.field(default_factory=list)
    failed: list[InstanceCount] = msgspec.field(default_factory=list)


class RecentError(msgspec.Struct, kw_only=True):
    """One `queue.error` as the overview lists it."""

    at: float
    """Epoch seconds when it was recorded."""
    instance: str | None
    error: str


class FleetOverview(msgspec.Struct, kw_only=True):
    """Fleet-wide figures (`GET /fleet/overview`, and each event of `GET /fleet/stream`)."""

    timestamp: float
    queueSize: int
    """Ready messages on global.messages."""
    ingestQueueSize: int = 0
    deadLetters: int = 0
    """Messages in global.messages.dlq."""
    ingestDeadLetters: int = 0
    """Messages in fila.ingest.dlq."""
    inRate: float = 0.0
    """Audio queued per second (last interval)."""
    outRate: float = 0.0
    """Webhooks delivered per second (last interval)."""
    processedToday: int = 0
    totals: dict[str, int] = msgspec.field(default_factory=dict)
    """Global counters (fila.stats.FIELDS)."""
    rateLimitStatus: RateLimitStatus | None = None
    workersAlive: int = 0
    workers: list[WorkerInfo] = msgspec.field(default_factory=list)
    paused: bool = False
    emergencyFilter: bool = False
    health: list[DependencyHealth] = msgspec.field(default_factory=list)
    alerts: list[Alert] = msgspec.field(default_factory=list)
    openCircuits: list[str] = msgspec.field(default_factory=list)
    """Webhook URLs whose circuit breaker is open (of the webhooks configured now)."""
    busiest: Busiest = msgspec.field(default_factory=Busiest)
    recentErrors: list[RecentError] = msgspec.field(default_factory=list)
    """The latest queue.error reasons, newest first."""


class WeightRecord(msgspec.Struct, kw_only=True):
    """`GET/PUT /instance/{instance}/weight`."""

    instance: str
    weight: int
    priority: int
    """What its messages carry on global.messages."""
