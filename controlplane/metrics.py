"""`/metrics` for Prometheus: figures read at scrape time from RabbitMQ, Redis and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import aiormq
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from controlplane.fleet.service import FleetService
from controlplane.queue.service import PEEK_INSTANCE, depth
from controlplane.runtime import Runtime
from controlplane.tables import CleanupRun
from fila import logging as flog
from fila import stats, topology
from fila.holds import DEPENDENCIES
from fila.stats import read_latency

log = flog.get("controlplane.metrics")

Metric = GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily


class Snapshot(Collector):
    """Yields metric families gathered beforehand (collectors are sync, the reads are async)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


async def gather(rt: Runtime) -> list[Metric]:
    """Each source read on its own: one that fails is reported down, the others still show."""
    out: list[Metric] = []
    up = GaugeMetricFamily(
        "fila_source_up", "1 when the source answered this scrape, else 0", labels=["source"]
    )
    for source, read in (("rabbitmq", _queues), ("redis", _redis), ("postgresql", _cleanup)):
        try:
            out.extend(await read(rt))
        except Exception as exc:
            log.warning("metrics source down", source=source, error=str(exc) or type(exc).__name__)
            up.add_metric([source], 0)
        else:
            up.add_metric([source], 1)
    out.append(up)
    out.append(
        GaugeMetricFamily(
            "fila_ingest_http_buffer_bytes",
            "Bytes of HTTP ingest bodies this control plane holds until RabbitMQ confirms them",
            rt.ingest_budget.held,
        )
    )
    return out


async def _queues(rt: Runtime) -> list[Metric]:
    queues = GaugeMetricFamily("fila_queue_depth", "Ready messages per queue", labels=["queue"])
    for name in (
        topology.GLOBAL_QUEUE,
        rt.settings.ingest_queue,
        topology.GLOBAL_DLQ,
        topology.INGEST_DLQ,
        topology.MONITORING_QUEUE,
        topology.MONITORING_DLQ,
    ):
        try:
            queues.add_metric([name], await depth(rt, name))
        except aiormq.exceptions.ChannelNotFoundEntity:
            continue  # not declared yet (no worker of that stage has started): no series
    return [queues]


async def _redis(rt: Runtime) -> list[Metric]:
    out: list[Metric] = []
    totals = await rt.counters.global_counts()
    events = CounterMetricFamily(
        "fila_events",
        "Pipeline counters (admits: processed, rejects: rateLimited)",
        labels=["kind"],
    )
    for field in stats.FIELDS:
        events.add_metric([field], totals.get(field, 0))
    out.append(events)
    out.append(
        CounterMetricFamily(
            "fila_admits", "Audio admitted by the token bucket", totals[stats.PROCESSED]
        )
    )
    out.append(
        CounterMetricFamily(
            "fila_rejects", "Audio refused by the token bucket", totals[stats.RATE_LIMITED]
        )
    )
    out.append(
        CounterMetricFamily("fila_deliveries", "Main webhook deliveries", totals[stats.DELIVERED])
    )
    filters = CounterMetricFamily(
        "fila_filtered", "Audio dropped by the duration filter", labels=["reason"]
    )
    filters.add_metric(["tooShort"], totals[stats.TOO_SHORT])
    filters.add_metric(["tooLong"], totals[stats.TOO_LONG])
    out.append(filters)

    limits = await rt.config.ratelimit()
    level = await rt.bucket.peek(PEEK_INSTANCE, limits)
    out.append(GaugeMetricFamily("fila_tokens", "Tokens in the global bucket", level.globalTokens))
    out.append(GaugeMetricFamily("fila_token_capacity", "Global bucket capacity", limits.capacity))
    out.append(
        GaugeMetricFamily(
            "fila_configured_filters",
            "Instances with their own audio filter",
            int(await rt.redis.hlen(rt.keys.config_filters)),
        )
    )
    out.append(
        GaugeMetricFamily(
            "fila_feedback_sessions",
            "Processing-feedback sessions (running or ending)",
            int(await rt.redis.zcard(rt.keys.feedback_sessions)),
        )
    )
    out.extend(await _holds(rt))
    for name in ("delivery", "end_to_end"):
        buckets, total, _count = await read_latency(rt.redis, rt.keys, name)
        out.append(
            HistogramMetricFamily(
                f"fila_{name}_latency_seconds",
                f"Latency ({name.replace('_', ' ')})",
                buckets=[(b, float(c)) for b, c in buckets],
                sum_value=total,
            )
        )
    return out


async def _holds(rt: Runtime) -> list[Metric]:
    """Dependency holds from the workers' heartbeats: who waits for what, and since when."""
    since = GaugeMetricFamily(
        "fila_worker_hold_since_seconds",
        "Epoch seconds since a worker holds its queue for a dependency (one series per hold)",
        labels=["worker", "role", "dependency"],
    )
    count = GaugeMetricFamily(
        "fila_dependency_holds", "Workers holding for each dependency", labels=["dependency"]
    )
    per: dict[str, int] = dict.fromkeys(DEPENDENCIES, 0)
    for worker in await FleetService(rt).workers():
        for hold in worker.holds:
            since.add_metric([worker.id, worker.role, hold.dependency], hold.since)
            per[hold.dependency] = per.get(hold.dependency, 0) + 1
    for dependency, n in per.items():
        count.add_metric([dependency], n)
    return [since, count]


async def _cleanup(rt: Runtime) -> list[Metric]:
    rows = await CleanupRun.raw(
        "SELECT count(*) AS runs, coalesce(sum(deleted_count), 0) AS deleted,"
        " coalesce(sum(error_count), 0) AS errors FROM cleanup_run WHERE finished_at IS NOT NULL"
    )
    totals = rows[0] if rows else {"runs": 0, "deleted": 0, "errors": 0}
    return [
        CounterMetricFamily(
            "fila_cleanup_deleted", "S3 objects deleted by cleanup runs", int(totals["deleted"])
        ),
        CounterMetricFamily(
            "fila_cleanup_errors", "S3 deletions that failed", int(totals["errors"])
        ),
        CounterMetricFamily("fila_cleanup_runs", "Cleanup runs finished", int(totals["runs"])),
    ]


class MetricsController(Controller):
    tags = ("health",)

    @get("/metrics", media_type=CONTENT_TYPE_LATEST)
    async def metrics(self, rt: NamedDependency[Runtime]) -> Response[bytes]:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(Snapshot(await gather(rt)))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
