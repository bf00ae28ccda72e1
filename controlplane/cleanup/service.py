"""S3 cleanup: delete `audio_` objects older than the retention, one run at a time fleet-wide."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import zoneinfo
from typing import Any

from apscheduler.triggers.cron import CronTrigger
from botocore.exceptions import BotoCoreError, ClientError

from controlplane import configlock
from controlplane.cleanup.schemas import (
    LastCleanup,
    Progress,
    RunResult,
    Schedule,
    SchedulePatch,
    Status,
)
from controlplane.clock import iso, now
from controlplane.configlock import config_write
from controlplane.errors import Conflict
from controlplane.history import service as history
from controlplane.runtime import Runtime
from controlplane.tables import CleanupRun, CleanupSchedule
from controlplane.validation import daily_time, retention_days, timezone
from fila import logging as flog
from fila.lease import Lease

log = flog.get("controlplane.cleanup")

PREFIX = "audio_"
AUDIO_KEY = re.compile(r"audio_\d+_[^/]+\.[A-Za-z0-9]+")
"""Only Fila's own `audio_<epoch ms>_<instance>.<ext>`: a shared bucket's other objects stay."""
BATCH = 1000
"""DeleteObjects takes at most 1000 keys."""
LOCK_MS = 120_000
"""The lock outlives a crashed holder by this much; it is refreshed after every page."""
ROW = "global"
FIRED_MS = 2 * 86_400_000
"""A scheduled fire time stays claimed this long (past any replica's misfire grace)."""
FIRE_SLACK = dt.timedelta(minutes=1)
"""A cron job that starts a little early still belongs to its own fire time."""


def trigger_for(schedule: Schedule) -> CronTrigger:
    hour, minute = (int(x) for x in schedule.dailyTime.split(":"))
    return CronTrigger(hour=hour, minute=minute, timezone=zoneinfo.ZoneInfo(schedule.timezone))


class LockLost(Exception):
    """Another run owns the cleanup lock now: this one stops deleting."""


def fire_label(schedule: Schedule, at: dt.datetime) -> str:
    """Local date and dailyTime of the latest fire at or before `at`: one label per scheduled day.

    Every replica, and both firings of a repeated hour (DST fall-back), get the same label.
    """
    tz = zoneinfo.ZoneInfo(schedule.timezone)
    hour, minute = (int(x) for x in schedule.dailyTime.split(":"))
    day = at.astimezone(tz).date()
    for back in range(3):
        wall = dt.datetime.combine(day - dt.timedelta(days=back), dt.time(hour, minute), tz)
        first = min(
            wall.replace(fold=0).astimezone(dt.UTC), wall.replace(fold=1).astimezone(dt.UTC)
        )
        if first <= at + FIRE_SLACK:
            return f"{wall.date().isoformat()}T{schedule.dailyTime}"
    return f"{day.isoformat()}T{schedule.dailyTime}"


def next_execution(schedule: Schedule, after: dt.datetime | None = None) -> dt.datetime | None:
    """Next fire time in the schedule's own timezone (so the offset shows it)."""
    if not schedule.enabled:
        return None
    tz = zoneinfo.ZoneInfo(schedule.timezone)
    fire: dt.datetime | None = trigger_for(schedule).get_next_fire_time(
        None, (after or now()).astimezone(tz)
    )
    return fire.astimezone(tz) if fire else None


class CleanupService:
    def __init__(self, rt: Runtime, batch: int = BATCH) -> None:
        self.rt = rt
        self.batch = min(batch, BATCH)

    def _default(self) -> Schedule:
        s = self.rt.settings
        return Schedule(
            enabled=s.cleanup_enabled,
            retentionDays=s.cleanup_retention_days,
            dailyTime=s.cleanup_daily_time,
            timezone=s.cleanup_timezone,
        )

    async def schedule(self) -> Schedule:
        row = await CleanupSchedule.select().where(CleanupSchedule.name == ROW).first()
        if row is None:
            return self._default()
        return Schedule(
            enabled=row["enabled"],
            retentionDays=row["retention_days"],
            dailyTime=row["daily_time"],
            timezone=row["timezone"],
        )

    async def update(self, patch: SchedulePatch) -> Schedule:
        """Read, merge and store under the schedule's lock; rescheduled after it."""
        async with config_write(configlock.CLEANUP):
            current = await self.schedule()
            value = Schedule(
                enabled=current.enabled if patch.enabled is None else patch.enabled,
                retentionDays=current.retentionDays
                if patch.retentionDays is None
                else retention_days("retentionDays", patch.retentionDays),
                dailyTime=current.dailyTime
                if patch.dailyTime is None
                else daily_time("dailyTime", patch.dailyTime),
                timezone=current.timezone
                if patch.timezone is None
                else timezone("timezone", patch.timezone),
            )
            await history.record(configlock.CLEANUP, current, value)
            await self._store(value)
        await self._reschedule(value)
        return value

    async def save(self, value: Schedule, reschedule: bool = True) -> None:
        """Store under the schedule's lock, then reschedule (outside it: a job scheduled inside
        would inherit the finished transaction's context; inside a wider one, the caller does)."""
        async with config_write(configlock.CLEANUP):
            await history.record(configlock.CLEANUP, await self.schedule(), value)
            await self._store(value)
        if reschedule:
            await self._reschedule(value)

    async def reschedule(self, value: Schedule) -> None:
        """Apply a stored schedule to this replica's cron (after the storing transaction)."""
        await self._reschedule(value)

    async def _reschedule(self, value: Schedule) -> None:
        scheduler = self.rt.cleanup_scheduler
        if scheduler is not None:
            await scheduler.apply(value)

    async def _store(self, value: Schedule) -> None:
        T = CleanupSchedule
        await (
            T.insert(
                T(
                    name=ROW,
                    enabled=value.enabled,
                    retention_days=value.retentionDays,
                    daily_time=value.dailyTime,
                    timezone=value.timezone,
                    updated_at=now(),
                )
            )
            .on_conflict(
                target=T.name,
                action="DO UPDATE",
                values=[T.enabled, T.retention_days, T.daily_time, T.timezone, T.updated_at],
            )
            .run()
        )

    async def progress(self) -> Progress | None:
        raw = await self.rt.redis.hgetall(self.rt.keys.cleanup_progress)
        if not raw:
            return None
        values = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        return Progress(
            scanned=values.get("scanned", 0),
            deleted=values.get("deleted", 0),
            errors=values.get("errors", 0),
        )

    async def status(self) -> Status:
        schedule = await self.schedule()
        last = (
            await CleanupRun.select()
            .where(CleanupRun.finished_at.is_not_null())
            .order_by(CleanupRun._meta.primary_key, ascending=False)
            .first()
        )
        return Status(
            enabled=schedule.enabled,
            nextExecution=iso(next_execution(schedule)),
            retentionDays=schedule.retentionDays,
            lastCleanup=LastCleanup(
                timestamp=iso(last["started_at"]) or "",
                deletedCount=last["deleted_count"],
                errorCount=last["error_count"],
            )
            if last
            else None,
            running=await self.progress(),
            dailyTime=schedule.dailyTime,
            timezone=schedule.timezone,
        )

    async def claim(self, schedule: Schedule, at: dt.datetime) -> bool:
        """True for the first replica to claim the fire time due at `at`; False for the others."""
        key = self.rt.keys.cleanup_fired(fire_label(schedule, at))
        return bool(await self.rt.redis.set(key, "1", nx=True, px=FIRED_MS))

    async def run(self, trigger: str = "manual", at: dt.datetime | None = None) -> RunResult:
        """Delete what is older than retentionDays before `at` (default now); Conflict if busy."""
        keys = self.rt.keys
        lease = Lease(self.rt.redis, keys.lock("cleanup"), LOCK_MS, keys.cleanup_progress)
        if not await lease.acquire():
            raise Conflict("cleanup: a cleanup is already running")
        try:
            return await self._locked_run(trigger, at, lease)
        finally:
            await lease.release()

    async def _locked_run(self, trigger: str, at: dt.datetime | None, lease: Lease) -> RunResult:
        """The run itself; whatever ends it is written on its row (re-raised if unexpected)."""
        started = now()
        run_id: int | None = None
        counts = {"scanned": 0, "deleted": 0, "errors": 0}
        failure = ""
        try:
            schedule = await self.schedule()
            cutoff = (at or started) - dt.timedelta(days=schedule.retentionDays)
            rows = await CleanupRun.insert(
                CleanupRun(
                    trigger=trigger, started_at=started, retention_days=schedule.retentionDays
                )
            ).returning(CleanupRun._meta.primary_key)
            run_id = rows[0]["id"]
            await self._publish(counts, lease)
            await self._sweep(cutoff, counts, lease)
        except (ClientError, BotoCoreError) as exc:
            failure = f"s3: {exc}"
            counts["errors"] += 1
            log.warning("cleanup listing failed", error=str(exc))
        except LockLost as exc:
            failure = str(exc)
        except BaseException as exc:
            reason = "cancelled" if isinstance(exc, asyncio.CancelledError) else repr(exc)
            log.error("cleanup failed", trigger=trigger, error=reason, **counts)
            try:
                await asyncio.shield(self._record(run_id, counts, reason))
            except Exception as record_exc:
                log.error("cleanup run not recorded", error=str(record_exc))
            raise
        await self._record(run_id, counts, failure)
        log.info("cleanup finished", trigger=trigger, failure=failure, **counts)
        return RunResult(
            success=not failure,
            deletedCount=counts["deleted"],
            errorCount=counts["errors"],
            executedAt=iso(started) or "",
            scannedCount=counts["scanned"],
        )

    async def _record(self, run_id: int | None, counts: dict[str, int], failure: str) -> None:
        """Close the run's row: counts so far, and success only when nothing went wrong."""
        if run_id is None:
            return
        await CleanupRun.update(
            {
                CleanupRun.finished_at: now(),
                CleanupRun.scanned_count: counts["scanned"],
                CleanupRun.deleted_count: counts["deleted"],
                CleanupRun.error_count: counts["errors"],
                CleanupRun.success: not failure,
                CleanupRun.error: failure,
            }
        ).where(CleanupRun._meta.primary_key == run_id)

    async def _publish(self, counts: dict[str, int], lease: Lease) -> None:
        """Progress for /cleanup/status, and the lock kept alive; LockLost once another owns it."""
        if not await lease.renew(counts):
            log.warning("cleanup lock lost; another run may have started", **counts)
            raise LockLost("lock lost: another run may have started")

    async def _sweep(self, cutoff: dt.datetime, counts: dict[str, int], lease: Lease) -> None:
        """List and delete page by page, checking the lock is still ours before every delete."""
        bucket = self.rt.settings.s3_bucket
        paginator = self.rt.s3.get_paginator("list_objects_v2")
        pending: list[str] = []
        async for page in paginator.paginate(Bucket=bucket, Prefix=PREFIX):
            for obj in page.get("Contents", []):
                if not AUDIO_KEY.fullmatch(obj["Key"]):
                    continue
                counts["scanned"] += 1
                if obj["LastModified"] < cutoff:
                    pending.append(obj["Key"])
                if len(pending) >= self.batch:
                    await self._publish(counts, lease)
                    await self._delete(bucket, pending[: self.batch], counts)
                    pending = pending[self.batch :]
            await self._publish(counts, lease)
        while pending:
            await self._publish(counts, lease)
            await self._delete(bucket, pending[: self.batch], counts)
            pending = pending[self.batch :]
        await self._publish(counts, lease)

    async def _delete(self, bucket: str, keys: list[str], counts: dict[str, int]) -> None:
        try:
            response: dict[str, Any] = await self.rt.s3.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": k} for k in keys], "Quiet": False},
            )
        except (ClientError, BotoCoreError) as exc:
            counts["errors"] += len(keys)
            log.warning("cleanup batch failed", keys=len(keys), error=str(exc))
            return
        counts["deleted"] += len(response.get("Deleted", []))
        counts["errors"] += len(response.get("Errors", []))
