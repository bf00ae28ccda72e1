"""Export and import of the whole configuration (validated fully before anything is written)."""

from __future__ import annotations

import contextlib
import datetime as dt

import msgspec

from controlplane import configlock
from controlplane.cleanup.schemas import Schedule
from controlplane.cleanup.service import CleanupService
from controlplane.config.schemas import ConfigDocument, ImportResult
from controlplane.configlock import config_write
from controlplane.errors import FieldError
from controlplane.filters.service import FilterService
from controlplane.history import service as history
from controlplane.queue.schemas import RateLimitPatch
from controlplane.queue.service import QueueService, check_ratelimit
from controlplane.runtime import Runtime
from controlplane.validation import audio_bounds, daily_time, retention_days, timezone
from controlplane.webhooks.service import WebhookService
from fila import logging as flog
from fila.history import IMPORT, ConfigHistory

log = flog.get("controlplane.config")

HISTORY_LIMIT = 1000
"""Most changes one `GET /config/history` returns."""


class ConfigService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def export(self) -> ConfigDocument:
        return ConfigDocument(
            filters=await FilterService(self.rt).all(),
            webhook=await WebhookService(self.rt).current(),
            cleanup=await CleanupService(self.rt).schedule(),
            ratelimit=await QueueService(self.rt).ratelimit(),
            emergency=await FilterService(self.rt).emergency(),
        )

    async def _check(self, doc: ConfigDocument) -> None:
        for name, f in doc.filters.items():
            audio_bounds(
                f.minDurationSeconds, f.maxDurationSeconds, f.enabled, prefix=f"filters.{name}."
            )
        if doc.cleanup is not None:
            retention_days("cleanup.retentionDays", doc.cleanup.retentionDays)
            daily_time("cleanup.dailyTime", doc.cleanup.dailyTime)
            timezone("cleanup.timezone", doc.cleanup.timezone)
        if doc.ratelimit is not None:
            check_ratelimit(doc.ratelimit)
        if doc.emergency is not None:
            e = doc.emergency
            audio_bounds(e.minDurationSeconds, e.maxDurationSeconds, e.enabled, "emergency.")
        if doc.webhook is not None:
            await WebhookService(self.rt).validate(doc.webhook, prefix="webhook.")

    async def load(self, doc: ConfigDocument) -> ImportResult:
        """One transaction under every document's lock: the import and its one history record
        commit together; a failure part-way rolls PostgreSQL back and re-mirrors Redis from it."""
        await self._check(doc)
        cleanup = Schedule(**msgspec.structs.asdict(doc.cleanup)) if doc.cleanup else None
        try:
            async with config_write(*configlock.ALL):
                before = await self.export()
                with history.suppressed():
                    await self._write(doc, cleanup)
                await history.record(IMPORT, before, doc, sorted(doc.filters))
        except BaseException:
            from controlplane.startup import mirror_config

            with contextlib.suppress(Exception):
                await mirror_config(self.rt)
            raise
        if cleanup is not None:
            await CleanupService(self.rt).reschedule(cleanup)
        await self.rt.config.announce("config", scope="all")
        return ImportResult(success=True, filters=len(doc.filters))

    async def _write(self, doc: ConfigDocument, cleanup: Schedule | None) -> None:
        filters = FilterService(self.rt)
        by_value: dict[tuple[int, int, bool], list[str]] = {}
        for name, f in doc.filters.items():
            by_value.setdefault((f.minDurationSeconds, f.maxDurationSeconds, f.enabled), []).append(
                name
            )
        for (lo, hi, on), names in by_value.items():
            await filters.bulk(names, lo, hi, on)
        if doc.webhook is not None:
            await WebhookService(self.rt).replace(doc.webhook)
        if cleanup is not None:
            await CleanupService(self.rt).save(cleanup, reschedule=False)
        if doc.ratelimit is not None:
            patch = RateLimitPatch(**msgspec.structs.asdict(doc.ratelimit))
            await QueueService(self.rt).set_ratelimit(patch)
        if doc.emergency is not None:
            await filters.set_emergency(doc.emergency)

    async def history(self, target: str | None, since: str | None, limit: int) -> ConfigHistory:
        """Newest first, within the retention (FILA_CONFIG_HISTORY_DAYS)."""
        if not 1 <= limit <= HISTORY_LIMIT:
            raise FieldError("limit", f"must be between 1 and {HISTORY_LIMIT}")
        when = None
        if since:
            try:
                when = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
            except ValueError:
                raise FieldError("since", "must be an ISO 8601 time") from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
        changes = await history.read(target, when, limit, self.rt.settings.config_history_days)
        return ConfigHistory(changes=changes, count=len(changes))
