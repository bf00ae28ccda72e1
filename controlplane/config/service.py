"""Export and import of the whole configuration (validated fully before anything is written)."""

from __future__ import annotations

import msgspec

from controlplane.cleanup.schemas import Schedule
from controlplane.cleanup.service import CleanupService
from controlplane.config.schemas import ConfigDocument, ImportResult
from controlplane.filters.service import FilterService
from controlplane.queue.schemas import RateLimitPatch
from controlplane.queue.service import QueueService, check_ratelimit
from controlplane.runtime import Runtime
from controlplane.validation import audio_bounds, daily_time, retention_days, timezone
from controlplane.webhooks.service import WebhookService


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
        await self._check(doc)
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
        if doc.cleanup is not None:
            await CleanupService(self.rt).save(Schedule(**msgspec.structs.asdict(doc.cleanup)))
        if doc.ratelimit is not None:
            patch = RateLimitPatch(**msgspec.structs.asdict(doc.ratelimit))
            await QueueService(self.rt).set_ratelimit(patch)
        if doc.emergency is not None:
            await filters.set_emergency(doc.emergency)
        await self.rt.config.announce("config", scope="all")
        return ImportResult(success=True, filters=len(doc.filters))
