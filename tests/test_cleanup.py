"""S3 cleanup against the real S3 (moto server) and PostgreSQL: what is deleted, counts, cron."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import pytest
from litestar.testing import AsyncTestClient

from controlplane.cleanup.service import CleanupService
from controlplane.runtime import Runtime, open_runtime, s3_client_args
from fila.keys import Keys
from fila.settings import Settings
from tests.support import wait_for
from tests.test_controlplane_support import cp, migrated

__all__ = ["cp", "migrated"]


@pytest.fixture
async def s3(settings: Settings) -> AsyncIterator[Any]:
    async with aioboto3.Session().client("s3", **s3_client_args(settings)) as client:
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


async def test_cleanup_deletes_exactly_the_expired_audio_objects(
    cp: AsyncTestClient[Any], s3: Any, settings: Settings
) -> None:
    bucket = settings.s3_bucket
    assert (await cp.put("/cleanup/schedule", json={"retentionDays": 7})).status_code == 200
    old = [f"audio_{1700000000000 + i}_inst-{i}.ogg" for i in range(5)]
    newest_old = await _put(s3, bucket, [*old, "report_old.txt"])
    fresh: list[str] = []

    async def newer_objects_exist() -> bool:
        key = f"audio_{1800000000000 + len(fresh)}_inst-new.ogg"
        stamp = await _put(s3, bucket, [key])
        fresh.append(key)
        return stamp > newest_old

    await wait_for(newer_objects_exist, timeout=30, interval=0.2)
    newest_fresh_first = min(
        [(await s3.head_object(Bucket=bucket, Key=k))["LastModified"] for k in fresh]
    )
    # Keep only fresh objects strictly newer than every old one (the loop may have made equals).
    fresh_kept = []
    for key in fresh:
        if (await s3.head_object(Bucket=bucket, Key=key))["LastModified"] > newest_old:
            fresh_kept.append(key)
        else:
            old.append(key)
    cutoff = min([(await s3.head_object(Bucket=bucket, Key=k))["LastModified"] for k in fresh_kept])
    assert cutoff >= newest_fresh_first

    # The service in this test's loop; "now" is 7 days after the cutoff, so objects modified
    # before it have outlived the retention.
    rt = await open_runtime(settings)
    try:
        result = await CleanupService(rt, batch=2).run(at=cutoff + dt.timedelta(days=7))
    finally:
        await rt.close()

    assert result.success
    assert result.deletedCount == len(old)
    assert result.errorCount == 0
    assert result.scannedCount == len(old) + len(fresh_kept)
    assert await _keys(s3, bucket) == {*fresh_kept, "report_old.txt"}

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
    scheduler = rt.extras["scheduler"]
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
    cp: AsyncTestClient[Any], s3: Any, settings: Settings
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
        assert dt.datetime.fromisoformat(run["timestamp"]) - due < dt.timedelta(seconds=10), run
        assert run["deletedCount"] == 0 and run["errorCount"] == 0, run
        assert "audio_1_cron.ogg" in await _keys(s3, settings.s3_bucket)
        status = (await cp.get("/cleanup/status")).json()
        assert dt.datetime.fromisoformat(status["nextExecution"]) == due + dt.timedelta(days=1)
    finally:
        await cp.put("/cleanup/schedule", json={"enabled": False})
