"""The daily cleanup cron (APScheduler 3), kept in step with the schedule in PostgreSQL."""

from __future__ import annotations

import datetime as dt

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from controlplane.cleanup.schemas import RunResult, Schedule
from controlplane.cleanup.service import CleanupService, fire_label, trigger_for
from controlplane.clock import now
from controlplane.errors import Conflict
from controlplane.runtime import Runtime
from fila import logging as flog

log = flog.get("controlplane.cleanup")

JOB = "cleanup"
SYNC_SECONDS = 30.0
"""Other replicas pick up a schedule change within this (the one taking the PUT, at once)."""
RETRY_SECONDS = (300.0, 900.0, 3600.0)
"""A scheduled run that failed (S3 down at fire time) is run again after each of these, on the
replica that claimed it, until one succeeds."""


class CleanupScheduler:
    def __init__(self, rt: Runtime, retry_seconds: tuple[float, ...] = RETRY_SECONDS) -> None:
        self.rt = rt
        self.scheduler = AsyncIOScheduler()
        self.current: Schedule | None = None
        self.retry_seconds = retry_seconds

    async def start(self) -> None:
        self.scheduler.start()
        await self.apply(await CleanupService(self.rt).schedule())
        self.scheduler.add_job(
            self._sync, "interval", seconds=SYNC_SECONDS, id="cleanup-sync", coalesce=True
        )

    async def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def apply(self, schedule: Schedule) -> None:
        """(Re)schedule the cron at dailyTime in timezone, or remove it when disabled."""
        if schedule == self.current:
            return
        self.current = schedule
        if self.scheduler.get_job(JOB):
            self.scheduler.remove_job(JOB)
        if schedule.enabled:
            self.scheduler.add_job(
                self._run,
                trigger_for(schedule),
                id=JOB,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=3600,
            )
        log.info("cleanup scheduled", next=str(self.next_run()))

    def next_run(self) -> dt.datetime | None:
        job = self.scheduler.get_job(JOB)
        return job.next_run_time if job else None

    async def _sync(self) -> None:
        try:
            await self.apply(await CleanupService(self.rt).schedule())
        except Exception as exc:
            log.warning("cleanup schedule sync failed", error=str(exc))

    async def _run(self) -> RunResult | None:
        """The cron's job: runs only on the replica that claims this fire time first."""
        schedule = self.current
        if schedule is None:
            return None
        at = now()
        try:
            service = CleanupService(self.rt)
            if not await service.claim(schedule, at):
                log.info("scheduled cleanup already claimed", fire=fire_label(schedule, at))
                return None
        except Exception as exc:
            log.error("scheduled cleanup not claimed", error=str(exc))
            return None
        return await self._attempt(fire_label(schedule, at), 0)

    async def _attempt(self, fire: str, retry: int) -> RunResult | None:
        """One run of a claimed fire time; a failed one is run again later, a bounded number
        of times (a run already going elsewhere counts as done)."""
        trigger = "scheduled" if retry == 0 else "scheduled-retry"
        try:
            result = await CleanupService(self.rt).run(trigger=trigger)
        except Conflict:
            log.info("cleanup already running elsewhere")
            return None
        except Exception as exc:
            log.error("scheduled cleanup failed", fire=fire, retry=retry, error=str(exc))
            result = None
        if result is not None and result.success:
            return result
        if retry < len(self.retry_seconds):
            delay = self.retry_seconds[retry]
            self.scheduler.add_job(
                self._attempt,
                "date",
                run_date=now() + dt.timedelta(seconds=delay),
                args=[fire, retry + 1],
                id=f"cleanup-retry-{fire}",
                replace_existing=True,
                misfire_grace_time=3600,
            )
            log.warning("scheduled cleanup will be retried", fire=fire, in_seconds=delay)
        else:
            log.error("scheduled cleanup gave up", fire=fire, retries=retry)
        return result
