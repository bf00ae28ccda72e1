"""Fleet views for operators and the TUI, built from Redis and RabbitMQ in a few round trips."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from controlplane.fleet.snapshot import row_of
from controlplane.health import dependencies
from controlplane.queue.service import QueueService
from controlplane.runtime import Runtime
from fila import fleetquery, stats, topology
from fila.fleetquery import InstancesQuery
from fila.models import WorkerInfo
from fila.recenterrors import RecentErrors
from fila.views import (
    Alert,
    Busiest,
    FleetOverview,
    InstanceCount,
    InstanceRow,
    InstancesView,
)

EXPORT_SLICE = 500
"""Rows encoded (and their levels read) per chunk of the full-fleet export."""
QUEUE_GROWING = 1000
"""Ready messages on global.messages above which the overview raises an alert."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FleetService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def workers(self) -> list[WorkerInfo]:
        """Workers whose heartbeat is younger than the TTL."""
        keys = self.rt.keys
        since = time.time() - self.rt.settings.worker_ttl_seconds
        ids = [_text(x) for x in await self.rt.redis.zrangebyscore(keys.workers, since, "+inf")]
        if not ids:
            return []
        raws = await self.rt.redis.mget([keys.worker(i) for i in ids])
        out: list[WorkerInfo] = []
        for raw in raws:
            if raw is None:
                continue
            try:
                out.append(msgspec.json.decode(raw, type=WorkerInfo))
            except msgspec.DecodeError:
                continue
        return sorted(out, key=lambda w: (w.role, w.id))

    async def instances(self, query: InstancesQuery) -> InstancesView:
        """One page of the fleet table, sorted and filtered here so the TUI moves only it."""
        rows, generated = await self.rt.fleet_rows.rows()
        limits = await self.rt.config.ratelimit()
        shown, matched = fleetquery.page(rows, query, await self._order(query))
        shown = await self.rt.fleet_rows.with_levels(shown, limits)
        return fleetquery.answer(shown, matched, len(rows), generated, query)

    async def export(self, query: InstancesQuery) -> AsyncIterator[bytes]:
        """The whole fleet as the same JSON, a slice of rows at a time with their levels,
        so 50,000 rows never sit encoded in one buffer."""
        rows, generated = await self.rt.fleet_rows.rows()
        limits = await self.rt.config.ratelimit()
        kept = fleetquery.matching(rows, query, await self._order(query))
        shown = kept[query.offset :]
        empty = msgspec.json.encode(fleetquery.answer([], len(kept), len(rows), generated, query))
        start = b'{"instances":['
        assert empty.startswith(start + b"]")
        yield start
        for at in range(0, len(shown), EXPORT_SLICE):
            part = await self.rt.fleet_rows.with_levels(shown[at : at + EXPORT_SLICE], limits)
            yield (b"," if at else b"") + b",".join(msgspec.json.encode(r) for r in part)
        yield empty[len(start) :]

    async def _order(self, query: InstancesQuery) -> Callable[[InstanceRow], Any] | None:
        """The `tokens` sort needs every level: the last background read's."""
        if query.sort != "tokens":
            return None
        levels = await self.rt.fleet_rows.levels()
        return lambda r: levels.get(r.instance, 0.0)

    async def instance(self, name: str) -> InstanceRow | None:
        """One instance's row, live or not, while its counters or its filter exist."""
        counts = (await self.rt.counters.instance_counts([name]))[name]
        configured = await self.rt.redis.hexists(self.rt.keys.config_filters, name)
        if not any(counts.values()) and not configured:
            return None
        seen = await self.rt.redis.zscore(self.rt.keys.instances, name)
        rule = await self.rt.config.filter_for(name)
        limits = await self.rt.config.ratelimit()
        last = float(seen) if seen is not None else None
        row = row_of(name, counts, rule, last, limits)
        [shown] = await self.rt.fleet_rows.with_levels([row], limits)
        return shown

    async def _depths(self) -> dict[str, int]:
        names = (
            topology.GLOBAL_QUEUE,
            self.rt.settings.ingest_queue,
            topology.GLOBAL_DLQ,
            topology.INGEST_DLQ,
        )
        out = dict.fromkeys(names, 0)
        for name in names:
            try:
                out[name] = await self.rt.queue_reads.depth(name)
            except Exception:
                continue
        return out

    def _rates(self, totals: dict[str, int]) -> tuple[float, float]:
        """Per-second rates since the last sample at least a second old (kept per process)."""
        now = time.monotonic()
        last = self.rt.fleet_rates
        if last is not None and now - last[0] < 1.0:
            return last[3], last[4]
        queued, delivered = totals[stats.PROCESSED], totals[stats.DELIVERED]
        rate_in = rate_out = 0.0
        if last is not None:
            span = now - last[0]
            rate_in = max(0.0, (queued - last[1]) / span)
            rate_out = max(0.0, (delivered - last[2]) / span)
        self.rt.fleet_rates = (now, queued, delivered, rate_in, rate_out)
        return rate_in, rate_out

    async def open_circuits(self) -> list[str]:
        """Open breakers of the webhooks configured now (a replaced URL's is no alert)."""
        raw = await self.rt.redis.hgetall(self.rt.keys.breakers)
        config = await self.rt.config.webhook()
        bases = [t.url.rstrip("/") for t in (config.principal, config.monitoramento) if t.url]
        out = []
        for url, value in raw.items():
            if not any(_text(url).startswith(base) for base in bases):
                continue
            try:
                state: Any = msgspec.json.decode(value)
            except msgspec.DecodeError:
                continue
            if isinstance(state, dict) and state.get("state") == "open":
                out.append(_text(url))
        return sorted(out)

    async def overview(self) -> FleetOverview:
        depths = await self._depths()
        totals = await self.rt.counters.global_counts()
        rate_in, rate_out = self._rates(totals)
        workers = await self.workers()
        limit = await QueueService(self.rt).ratelimit_status()
        health = await dependencies(self.rt)
        circuits = await self.open_circuits()
        emergency = await self.rt.config.emergency()
        overview = FleetOverview(
            timestamp=time.time(),
            queueSize=depths[topology.GLOBAL_QUEUE],
            ingestQueueSize=depths[self.rt.settings.ingest_queue],
            deadLetters=depths[topology.GLOBAL_DLQ],
            ingestDeadLetters=depths[topology.INGEST_DLQ],
            inRate=round(rate_in, 3),
            outRate=round(rate_out, 3),
            processedToday=await self.rt.counters.processed_today(),
            totals=totals,
            rateLimitStatus=limit,
            workersAlive=len(workers),
            workers=workers,
            paused=bool(await self.rt.redis.exists(self.rt.keys.paused)),
            emergencyFilter=emergency.enabled,
            health=health,
            openCircuits=circuits,
        )
        overview.busiest = await self.busiest()
        overview.recentErrors = await RecentErrors(self.rt.redis, self.rt.keys).latest()
        overview.alerts = alerts(overview)
        return overview

    async def busiest(self, top: int = 5) -> Busiest:
        """From the shared once-a-second rows: no extra read per overview."""
        rows, _ = await self.rt.fleet_rows.rows()

        def most(count: Callable[[InstanceRow], int]) -> list[InstanceCount]:
            ranked = sorted(((count(r), r.instance) for r in rows if count(r) > 0), reverse=True)
            return [InstanceCount(instance=name, count=n) for n, name in ranked[:top]]

        return Busiest(
            rejected=most(lambda r: r.rateLimited),
            filtered=most(lambda r: r.tooShort + r.tooLong),
            failed=most(lambda r: r.ingestFailed + r.deliveryFailed),
        )


def alerts(o: FleetOverview) -> list[Alert]:
    out: list[Alert] = []
    for dep in o.health:
        if not dep.ok:
            out.append(Alert(level="critical", code="dependency_down", message=f"{dep.name} down"))
    for role in ("ingest", "delivery"):
        if not any(w.role == role for w in o.workers):
            out.append(
                Alert(level="critical", code="worker_missing", message=f"no {role} worker alive")
            )
    if o.queueSize > QUEUE_GROWING:
        out.append(
            Alert(level="warning", code="queue_growing", message=f"{o.queueSize} messages queued")
        )
    if o.rateLimitStatus is not None and o.rateLimitStatus.tokens < 1:
        out.append(Alert(level="warning", code="bucket_empty", message="token bucket empty"))
    for url in o.openCircuits:
        out.append(Alert(level="warning", code="circuit_open", message=f"circuit open: {url}"))
    holding: dict[str, int] = {}
    for worker in o.workers:
        if worker.holding:
            holding[worker.holding] = holding.get(worker.holding, 0) + 1
    for text, count in sorted(holding.items()):
        workers = f"{count} worker{'s' if count > 1 else ''}"
        out.append(Alert(level="warning", code="dependency_hold", message=f"{text} ({workers})"))
    if o.emergencyFilter:
        out.append(Alert(level="warning", code="emergency_filter", message="emergency filter on"))
    return out
