"""Audio filter routes: per instance (contract), bulk and the emergency filter (operators)."""

from __future__ import annotations

from litestar import Controller, get, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from controlplane.filters.schemas import (
    AudioFilterBody,
    AudioFilterRecord,
    BulkFilterBody,
    BulkResult,
    EmergencyBody,
)
from controlplane.filters.service import FilterService
from controlplane.runtime import Runtime
from fila.audiofilter import AudioFilter, EmergencyFilter


def provide(rt: NamedDependency[Runtime]) -> FilterService:
    return FilterService(rt)


DEPENDENCIES = {"filters": Provide(provide, sync_to_thread=False)}


class FilterController(Controller):
    tags = ("filters",)
    dependencies = DEPENDENCIES

    @get("/instance/{instance:str}/filters/audio")
    async def get_filter(
        self, instance: FromPath[str], filters: NamedDependency[FilterService]
    ) -> AudioFilter:
        """The instance's filter; defaults (3, 7200, true) for an instance never configured."""
        return await filters.get(instance)

    @put("/instance/{instance:str}/filters/audio")
    async def put_filter(
        self,
        instance: FromPath[str],
        data: JSONBody[AudioFilterBody],
        filters: NamedDependency[FilterService],
    ) -> AudioFilterRecord:
        """Store, mirror into Redis and tell the workers (applied without restart)."""
        return await filters.put(
            instance, data.minDurationSeconds, data.maxDurationSeconds, data.enabled
        )

    @put("/filters/audio/bulk")
    async def bulk(
        self, data: JSONBody[BulkFilterBody], filters: NamedDependency[FilterService]
    ) -> BulkResult:
        """One filter for many instances (`instances: null` means every known instance)."""
        updated = await filters.bulk(
            data.instances, data.minDurationSeconds, data.maxDurationSeconds, data.enabled
        )
        return BulkResult(updated=updated)

    @get("/filters/emergency")
    async def get_emergency(self, filters: NamedDependency[FilterService]) -> EmergencyFilter:
        return await filters.emergency()

    @put("/filters/emergency")
    async def put_emergency(
        self, data: JSONBody[EmergencyBody], filters: NamedDependency[FilterService]
    ) -> EmergencyFilter:
        """While enabled, overrides every instance's filter fleet-wide."""
        return await filters.set_emergency(
            EmergencyFilter(
                enabled=data.enabled,
                minDurationSeconds=data.minDurationSeconds,
                maxDurationSeconds=data.maxDurationSeconds,
                reason=data.reason,
            )
        )
