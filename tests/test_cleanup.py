"""S3 cleanup against the real S3 (moto server) and PostgreSQL: what is deleted, counts, cron."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
import zoneinfo
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from controlplane.cleanup.scheduler import CleanupScheduler
from controlplane.cleanup.schemas import Schedule
from controlplane.cleanup.service import CleanupService, fire_label
from controlplane.runtime import Runtime, open_runtime
from controlplane.tables import CleanupRun
from fila import s3 as s3_clients
from fila.dev import services
from fila.keys import Keys
from fila.settings import Settings
from tests.faults import TcpProxy
from tests.support import wait_for
from tests.test_controlplane_support import cp, migrated

__all__ = ["cp", "migrated"]


@pytest.fixture
async def s3(settings: Settings) -> AsyncIterator[Any]:
    async with s3_clients.client(settings) as client:
        yield client


async def _put(s3: Any, bucket: str, keys: list[str]) -> dt.datetime:
    """Upload `keys`; returns the newest LastModified among them, as S3 recorded it."""
    for key in keys:
        await s3.put_object(Bucket=bucket, Key=key, Body=b"OggS" + key.encode())
    stamps = [(await s3.head_object(Bucket=bucket, Key=k))["LastModified"] for k in keys]
    return max(stamps)


async def _keys(s3: Any, bucket: str) -> set[str]:
    listed = await s3.list_objects_v2(Bucket=bucket)
    return {o["Key"] for o in listed.get("Contents", [])}


@asynccontextmanager
async def _runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """The control plane's runtime in this test's loop, closed afterwards."""
    rt = await open_runtime(settings)
    try:
        yield rt
    finally:
        await rt.close()


async def test_cleanup_deletes_exactly_the_expired_audio_objects(
    cp: AsyncTestClient[Any], s3: Any, settings: Settings
) -> None:
    bucket = settings.s3_bucket
    assert (await cp.put("/cleanup/schedule", json={"retentionDays": 7})).status_code == 200
    old = [f"audio_{1700000000000 + i}_inst-{i}.ogg" for i in range(5)]
    others = ["report_old.txt", "audio_exports/report.csv", "audio_notes.txt"]  # not Fila's
    newest_old = await _put(s3, bucket, [*old, *others])
    fresh: list[str] = []

    async def newer_objects_exist() -> bool:
        key = f"audio_{1800000000000 + len(fresh)}_inst-new.ogg"
        stamp = await _put(s3, bucket, [key])
        fresh.append(key)
        return stamp > newest_old

    await wait_for(newer_objects_exist, timeout=30, interval=0.2)
    # Keep only fresh objects strictly newer than every old one (the loop may have made equals).
    fresh_kept = []
    for key in fresh:
        if (await s3.head_object(Bucket=bucket, Key=key))["LastModified"] > newest_old:
            fresh_kept.append(key)
        else:
            old.append(key)
    cutoff = min([(await s3.head_object(Bucket=bucket, Key=k))["LastModified"] for k in fresh_kept])

    # The service in this test's loop; "now" is 7 days after the cutoff, so objects modified
    # before it have outlived the retention.
    async with _runtime(settings) as rt:
        result = await CleanupService(rt, batch=2).run(at=cutoff + dt.timedelta(days=7))

    assert result.success
    assert result.deletedCount == len(old)
    assert result.errorCount == 0
    assert result.scannedCount == len(old) + len(fresh_kept)
    assert await _keys(s3, bucket) == {*fresh_kept, *others}

    status = (await cp.get("/cleanup/status")).json()
    assert status["running"] is None
    assert status["lastCleanup"] == {
        "timestamp": result.executedAt,
        "deletedCount": len(old),
        "errorCount": 0,
    }


async def test_execute_route_runs_now_and_keeps_what_is_young(
    cp: AsyncTestClient[Any], s3: Any, settings: Settings
) -> None:
    await _put(s3, settings.s3_bucket, ["audio_1_young.ogg", "audio_2_young.mp3"])
    assert (await cp.put("/cleanup/schedule", json={"retentionDays": 1})).json()[
        "retentionDays"
    ] == 1
    response = await cp.post("/cleanup/execute")
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"success", "deletedCount", "errorCount", "executedAt"} <= set(body)
    assert body["success"] is True and body["deletedCount"] == 0 and body["errorCount"] == 0
    assert dt.datetime.fromisoformat(body["executedAt"]).utcoffset() is not None
    assert await _keys(s3, settings.s3_bucket) == {"audio_1_young.ogg", "audio_2_young.mp3"}
    status = (await cp.get("/cleanup/status")).json()
    assert {"enabled", "nextExecution", "retentionDays", "lastCleanup", "running"} <= set(status)
    assert status["lastCleanup"]["timestamp"] == body["executedAt"]
    assert status["retentionDays"] == 1


async def test_one_run_at_a_time_and_progress_is_visible(
    cp: AsyncTestClient[Any], redis: Any, keys: Keys
) -> None:
    """Another replica holding the lock: execute refuses, status shows that run's progress."""
    await redis.set(keys.lock("cleanup"), "other-replica", px=30_000)
    await redis.hset(keys.cleanup_progress, mapping={"scanned": 40, "deleted": 12, "errors": 1})
    refused = await cp.post("/cleanup/execute")
    assert refused.status_code == 409
    assert "already running" in refused.json()["message"]
    status = (await cp.get("/cleanup/status")).json()
    assert status["running"] == {"scanned": 40, "deleted": 12, "errors": 1}
    assert await redis.get(keys.lock("cleanup")) == b"other-replica"


async def test_next_execution_honours_the_timezone(cp: AsyncTestClient[Any]) -> None:
    rt: Runtime = cp.app.state.rt
    scheduler = rt.cleanup_scheduler
    assert scheduler is not None
    for zone, offset in (("Asia/Tokyo", 9), ("America/Sao_Paulo", -3)):
        put = await cp.put(
            "/cleanup/schedule", json={"enabled": True, "dailyTime": "03:15", "timezone": zone}
        )
        assert put.json() == {
            "enabled": True,
            "retentionDays": put.json()["retentionDays"],
            "dailyTime": "03:15",
            "timezone": zone,
        }
        status = (await cp.get("/cleanup/status")).json()
        nxt = dt.datetime.fromisoformat(status["nextExecution"])
        assert nxt.utcoffset() == dt.timedelta(hours=offset)
        assert (nxt.hour, nxt.minute) == (3, 15)
        ahead = nxt - dt.datetime.now(dt.UTC)
        assert dt.timedelta(0) < ahead <= dt.timedelta(days=1)
        assert scheduler.next_run() == nxt
    off = await cp.put("/cleanup/schedule", json={"enabled": False})
    assert off.json()["enabled"] is False
    assert (await cp.get("/cleanup/status")).json()["nextExecution"] is None
    assert scheduler.next_run() is None
    schedule = (await cp.get("/cleanup/schedule")).json()
    assert schedule["timezone"] == "America/Sao_Paulo" and schedule["dailyTime"] == "03:15"


async def test_the_cron_fires_at_daily_time_in_its_timezone(
    cp: AsyncTestClient[Any], s3: Any, settings: Settings, redis: Any, keys: Keys
) -> None:
    """The scheduled run itself: set dailyTime to the coming minute in Kolkata (UTC+05:30)."""
    zone = zoneinfo.ZoneInfo("Asia/Kolkata")
    local = dt.datetime.now(zone)
    due = (local + dt.timedelta(minutes=2 if local.second >= 50 else 1)).replace(
        second=0, microsecond=0
    )
    await _put(s3, settings.s3_bucket, ["audio_1_cron.ogg"])
    put = await cp.put(
        "/cleanup/schedule",
        json={
            "enabled": True,
            "dailyTime": due.strftime("%H:%M"),
            "timezone": "Asia/Kolkata",
            "retentionDays": 1,
        },
    )
    assert put.status_code == 200, put.text
    status = (await cp.get("/cleanup/status")).json()
    assert dt.datetime.fromisoformat(status["nextExecution"]) == due

    async def last_run() -> dict[str, Any] | None:
        """Nothing else runs a cleanup meanwhile: a run stamped at or after `due` is the cron's."""
        last = (await cp.get("/cleanup/status")).json()["lastCleanup"]
        if last and dt.datetime.fromisoformat(last["timestamp"]) >= due:
            return dict(last)
        return None

    try:
        await wait_for(last_run, timeout=(due - local).total_seconds() + 30, interval=0.5)
        run = await last_run()
        assert run is not None
        # It fired for `due` itself: that day's fire time is the one claimed.
        schedule = Schedule(
            enabled=True, retentionDays=1, dailyTime=due.strftime("%H:%M"), timezone="Asia/Kolkata"
        )
        assert await redis.exists(keys.cleanup_fired(fire_label(schedule, due))), run
        assert run["deletedCount"] == 0 and run["errorCount"] == 0, run
        assert "audio_1_cron.ogg" in await _keys(s3, settings.s3_bucket)
        status = (await cp.get("/cleanup/status")).json()
        assert dt.datetime.fromisoformat(status["nextExecution"]) == due + dt.timedelta(days=1)
    finally:
        await cp.put("/cleanup/schedule", json={"enabled": False})


FAR = dt.timedelta(days=3650)
"""`at=` this far ahead: whatever retentionDays the shared schedule holds, everything is expired."""


def _expired(n: int) -> list[str]:
    return [f"audio_{1700000000000 + i}_expired.ogg" for i in range(n)]


async def _row(trigger: str) -> dict[str, Any]:
    """The one run recorded with this (test-unique) trigger."""
    rows = await CleanupRun.select().where(CleanupRun.trigger == trigger)
    assert len(rows) == 1, rows
    return dict(rows[0])


def _trigger() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


async def _expired_run(s3: Any, settings: Settings, n: int) -> str:
    """`n` expired objects in the bucket; a trigger of its own for the run over them."""
    await _put(s3, settings.s3_bucket, _expired(n))
    return _trigger()


class _FailsAfterFirstBatch(CleanupService):
    """A run that meets an unexpected error (not S3's) once it has deleted one batch."""

    async def _delete(self, bucket: str, keys: list[str], counts: dict[str, int]) -> None:
        await super()._delete(bucket, keys, counts)
        raise RuntimeError("database went away")


async def test_an_unexpected_error_is_recorded_as_a_failure_and_the_lock_released(
    cp: AsyncTestClient[Any], s3: Any, settings: Settings, redis: Any, keys: Keys
) -> None:
    trigger = await _expired_run(s3, settings, 6)
    async with _runtime(settings) as rt:
        with pytest.raises(RuntimeError, match="database went away"):
            await _FailsAfterFirstBatch(rt, batch=2).run(
                trigger=trigger, at=dt.datetime.now(dt.UTC) + FAR
            )
    row = await _row(trigger)
    assert row["success"] is False and "database went away" in row["error"], row
    assert row["finished_at"] is not None and row["deleted_count"] == 2, row
    assert len(await _keys(s3, settings.s3_bucket)) == 4
    assert await redis.exists(keys.lock("cleanup"), keys.cleanup_progress) == 0


class _Stalls(CleanupService):
    """A run that stops in its first delete until cancelled (a shutdown mid-run)."""

    def __init__(self, rt: Runtime, batch: int) -> None:
        super().__init__(rt, batch)
        self.deleting = asyncio.Event()

    async def _delete(self, bucket: str, keys: list[str], counts: dict[str, int]) -> None:
        self.deleting.set()
        await asyncio.Event().wait()


async def test_a_cancelled_run_is_recorded_as_a_failure_and_the_lock_released(
    cp: AsyncTestClient[Any], s3: Any, settings: Settings, redis: Any, keys: Keys
) -> None:
    trigger = await _expired_run(s3, settings, 3)
    async with _runtime(settings) as rt:
        service = _Stalls(rt, batch=2)
        task = asyncio.create_task(service.run(trigger=trigger, at=dt.datetime.now(dt.UTC) + FAR))
        await asyncio.wait_for(service.deleting.wait(), timeout=30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    row = await _row(trigger)
    assert (row["success"], row["error"], row["deleted_count"]) == (False, "cancelled", 0), row
    assert row["finished_at"] is not None
    assert await redis.exists(keys.lock("cleanup"), keys.cleanup_progress) == 0


class _ScheduleUnreadable(CleanupService):
    async def schedule(self) -> Schedule:
        raise ConnectionError("schedule unreadable")


class _RowNotClosed(CleanupService):
    async def _record(self, run_id: int | None, counts: dict[str, int], failure: str) -> None:
        raise ConnectionError("row not closed")


@pytest.mark.parametrize("broken", [_ScheduleUnreadable, _RowNotClosed])
async def test_the_lock_is_released_whatever_step_fails(
    cp: AsyncTestClient[Any], settings: Settings, redis: Any, keys: Keys, broken: type
) -> None:
    """Reading the schedule after taking the lock, or closing the row: the lock goes anyway."""
    async with _runtime(settings) as rt:
        with pytest.raises(ConnectionError):
            await broken(rt).run(trigger=_trigger())
        assert await redis.exists(keys.lock("cleanup")) == 0
        assert (await CleanupService(rt).run(trigger=_trigger())).success


class _LosesItsLock(CleanupService):
    """Another run takes the lock (ours expired) right after this one's first delete."""

    async def _delete(self, bucket: str, keys: list[str], counts: dict[str, int]) -> None:
        await super()._delete(bucket, keys, counts)
        await self.rt.redis.set(self.rt.keys.lock("cleanup"), "other-replica", px=30_000)


async def test_a_run_that_loses_its_lock_stops_deleting(
    cp: AsyncTestClient[Any], s3: Any, settings: Settings, redis: Any, keys: Keys
) -> None:
    trigger = await _expired_run(s3, settings, 6)
    async with _runtime(settings) as rt:
        result = await _LosesItsLock(rt, batch=2).run(
            trigger=trigger, at=dt.datetime.now(dt.UTC) + FAR
        )
    assert (result.success, result.deletedCount) == (False, 2), result
    assert len(await _keys(s3, settings.s3_bucket)) == 4
    row = await _row(trigger)
    assert row["success"] is False and "lock lost" in row["error"], row
    assert row["deleted_count"] == 2
    assert await redis.get(keys.lock("cleanup")) == b"other-replica"


async def test_a_scheduled_time_runs_once_across_replicas(
    cp: AsyncTestClient[Any], s3: Any, settings: Settings
) -> None:
    """Two replicas' crons fire for the same time (and one fires again): one run, then manual."""
    await _put(s3, settings.s3_bucket, ["audio_1_sched.ogg"])
    zone = "America/New_York"
    local = dt.datetime.now(zoneinfo.ZoneInfo(zone))
    schedule = Schedule(
        enabled=True, retentionDays=7, dailyTime=local.strftime("%H:%M"), timezone=zone
    )
    since = dt.datetime.now(dt.UTC)
    replicas = [await open_runtime(settings) for _ in range(2)]
    try:
        crons = [CleanupScheduler(rt) for rt in replicas]
        for cron in crons:
            cron.current = schedule
        fired = await asyncio.gather(*(cron._run() for cron in crons))
        again = await crons[0]._run()
        assert sum(result is not None for result in fired) == 1, fired
        assert again is None
        until = dt.datetime.now(dt.UTC)
        manual = await CleanupService(replicas[1]).run(trigger="manual")
        assert manual.success
    finally:
        for rt in replicas:
            await rt.close()
    scheduled = await CleanupRun.select().where(
        (CleanupRun.trigger == "scheduled")
        & (CleanupRun.started_at >= since)
        & (CleanupRun.started_at <= until)
    )
    assert len(scheduled) == 1, scheduled


def test_both_firings_of_a_repeated_hour_share_one_label() -> None:
    """DST fall-back in New York: 01:30 comes at 05:30Z and again at 06:30Z, one fire time."""
    schedule = Schedule(
        enabled=True, retentionDays=7, dailyTime="01:30", timezone="America/New_York"
    )
    first = dt.datetime(2026, 11, 1, 5, 30, tzinfo=dt.UTC)
    second = dt.datetime(2026, 11, 1, 6, 30, tzinfo=dt.UTC)
    assert fire_label(schedule, first) == fire_label(schedule, second) == "2026-11-01T01:30"
    # A day later (now EST): 00:30 is still the 1st's fire time; 01:30 is the 2nd's.
    assert fire_label(schedule, first + dt.timedelta(days=1)) == "2026-11-01T01:30"
    assert fire_label(schedule, second + dt.timedelta(days=1)) == "2026-11-02T01:30"
    # Spring forward: 02:30 does not exist on 8 March; whenever the cron fires for it, that day.
    spring = Schedule(enabled=True, retentionDays=7, dailyTime="02:30", timezone="America/New_York")
    for hhmm in ((6, 30), (7, 0), (7, 30)):
        at = dt.datetime(2026, 3, 8, *hhmm, tzinfo=dt.UTC)
        assert fire_label(spring, at) == "2026-03-08T02:30"


async def test_a_failed_scheduled_run_is_retried_until_it_succeeds(
    migrated: Settings, settings: Settings
) -> None:
    """S3 refuses connections at fire time: the run is recorded failed, then run again later."""
    proxy = TcpProxy("127.0.0.1", services.S3_PORT)
    await proxy.start()
    await proxy.cut()
    zone = "Europe/Lisbon"
    local = dt.datetime.now(zoneinfo.ZoneInfo(zone))
    schedule = Schedule(
        enabled=True, retentionDays=7, dailyTime=local.strftime("%H:%M"), timezone=zone
    )
    since = dt.datetime.now(dt.UTC)
    rt = await open_runtime(settings.replace(s3_endpoint_url=f"http://{proxy.url_host}"))
    cron = CleanupScheduler(rt, retry_seconds=(1.0, 1.0))
    cron.scheduler.start()
    try:
        cron.current = schedule
        first = await cron._run()
        assert first is not None and first.success is False, first
        await proxy.restore()

        async def retried() -> list[dict[str, Any]]:
            return await CleanupRun.select().where(
                (CleanupRun.trigger == "scheduled-retry")
                & (CleanupRun.started_at >= since)
                & (CleanupRun.success == True)  # noqa: E712 - a Piccolo expression
            )

        await wait_for(retried, timeout=60)
        assert len(await retried()) == 1
        failed = await CleanupRun.select().where(
            (CleanupRun.trigger == "scheduled") & (CleanupRun.started_at >= since)
        )
        assert [(r["success"], r["error"][:3]) for r in failed] == [(False, "s3:")], failed
    finally:
        await cron.stop()
        await rt.close()
        await proxy.close()
