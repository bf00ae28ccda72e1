"""Audio filters: PostgreSQL first, then the Redis mirror, then a control message to workers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from controlplane import configlock, configrows
from controlplane.clock import iso, now
from controlplane.configlock import config_write
from controlplane.errors import FieldError
from controlplane.filters.schemas import AudioFilterRecord
from controlplane.history import service as history
from controlplane.runtime import Runtime
from controlplane.tables import InstanceAudioFilter
from controlplane.validation import audio_bounds
from fila.audiofilter import AudioFilter, EmergencyFilter
from fila.configstore import default_filter
from fila.history import BULK, instance_target

T = InstanceAudioFilter


def _record(row: dict[str, Any]) -> AudioFilterRecord:
    return AudioFilterRecord(
        id=row["id"],
        instanceName=row["instance_name"],
        minDurationSeconds=row["min_duration_seconds"],
        maxDurationSeconds=row["max_duration_seconds"],
        enabled=row["enabled"],
        createdAt=iso(row["created_at"]) or "",
        updatedAt=iso(row["updated_at"]) or "",
    )


class FilterService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def get(self, instance: str) -> AudioFilter:
        row = await T.select().where(T.instance_name == instance).first()
        if row is None:
            return default_filter(self.rt.settings)
        return AudioFilter(
            minDurationSeconds=row["min_duration_seconds"],
            maxDurationSeconds=row["max_duration_seconds"],
            enabled=row["enabled"],
        )

    async def all(self) -> dict[str, AudioFilter]:
        rows = await T.select().order_by(T.instance_name)
        return {
            r["instance_name"]: AudioFilter(
                minDurationSeconds=r["min_duration_seconds"],
                maxDurationSeconds=r["max_duration_seconds"],
                enabled=r["enabled"],
            )
            for r in rows
        }

    async def _upsert(self, names: list[str], value: AudioFilter, at: dt.datetime) -> None:
        rows = [
            T(
                instance_name=name,
                min_duration_seconds=value.minDurationSeconds,
                max_duration_seconds=value.maxDurationSeconds,
                enabled=value.enabled,
                created_at=at,
                updated_at=at,
            )
            for name in names
        ]
        await (
            T.insert(*rows)
            .on_conflict(
                target=T.instance_name,
                action="DO UPDATE",
                values=[
                    T.min_duration_seconds,
                    T.max_duration_seconds,
                    T.enabled,
                    T.updated_at,
                ],
            )
            .run()
        )

    async def put(self, instance: str, lo: Any, hi: Any, on: Any) -> AudioFilterRecord:
        value = _filter(lo, hi, on)
        async with config_write(configlock.FILTERS):
            old = await self.get(instance)
            await history.record(instance_target(instance), old, value, [instance])
            await self._upsert([instance], value, now())
            row = await T.select().where(T.instance_name == instance).first()
            assert row is not None
            await self.rt.config.set_filter(instance, value)
        await self.rt.config.announce("config", scope="filters", instance=instance)
        return _record(row)

    async def known_instances(self) -> list[str]:
        seen = await self.rt.counters.instances()
        rows = await T.select(T.instance_name)
        return sorted(set(seen) | {r["instance_name"] for r in rows})

    async def bulk(self, instances: list[str] | None, lo: Any, hi: Any, on: Any) -> int:
        value = _filter(lo, hi, on)
        names = sorted(set(instances)) if instances is not None else await self.known_instances()
        names = [n for n in names if n]
        if not names:
            return 0
        async with config_write(configlock.FILTERS):
            stored = await self.all()
            default = default_filter(self.rt.settings)
            old = {name: stored.get(name, default) for name in names}
            await history.record(BULK, {"filters": old}, value, names)
            for start in range(0, len(names), 500):
                await self._upsert(names[start : start + 500], value, now())
            await self.rt.config.set_filters(dict.fromkeys(names, value))
        await self.rt.config.announce("config", scope="filters")
        return len(names)

    async def emergency(self) -> EmergencyFilter:
        raw = await configrows.load(configrows.EMERGENCY)
        if raw is None:
            return EmergencyFilter()
        return msgspec.convert(raw, EmergencyFilter)

    async def set_emergency(self, value: EmergencyFilter) -> EmergencyFilter:
        audio_bounds(value.minDurationSeconds, value.maxDurationSeconds, value.enabled)
        if "\x00" in value.reason:  # PostgreSQL text (and JSONB) cannot hold it: 400, not 503
            raise FieldError("reason", "must not contain a NUL character")
        async with config_write(configlock.EMERGENCY):
            await history.record(configlock.EMERGENCY, await self.emergency(), value)
            await configrows.store(configrows.EMERGENCY, msgspec.to_builtins(value))
            await self.rt.config.set_emergency(value)
        await self.rt.config.announce("config", scope="emergency")
        return value


def _filter(lo: Any, hi: Any, on: Any) -> AudioFilter:
    low, high, enabled = audio_bounds(lo, hi, on)
    return AudioFilter(minDurationSeconds=low, maxDurationSeconds=high, enabled=enabled)
