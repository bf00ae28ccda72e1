"""A filter PUT reaches a running `fila worker ingest` without restart (control channel)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import redis.asyncio as aioredis

from fila.keys import Keys
from fila.settings import Settings
from tests.support import Proc, wait_for
from tests.test_controlplane_support import cp_proc, migrated
from tests.test_ingest_support import audio_event, counters, noise, rabbit

__all__ = ["cp_proc", "migrated"]


async def test_filter_change_is_applied_by_a_running_worker(
    cp_proc: httpx.AsyncClient,
    settings: Settings,
    redis: aioredis.Redis,
    keys: Keys,
    spawn: Callable[..., Proc],
) -> None:
    cp = cp_proc
    worker = spawn(["worker", "ingest"], settings)

    async def worker_listed() -> bool:
        assert worker.popen.poll() is None, worker.output()
        listed = (await cp.get("/workers")).json()["workers"]
        return any(w["role"] == "ingest" and w["pid"] == worker.pid for w in listed)

    await wait_for(worker_listed, timeout=60, interval=0.2)
    async with rabbit(settings) as mq:
        # 12 s passes the default filter: the worker now holds live-a's filter in its cache.
        await mq.publish(audio_event("live-a", "LIVE-1", 12, data=noise(200)))

        async def count(field: str, n: int) -> bool:
            return (await counters(redis, keys, "live-a")).get(field, 0) >= n

        await wait_for(lambda: count("processed", 1), timeout=60)

        put = await cp.put(
            "/instance/live-a/filters/audio",
            json={"minDurationSeconds": 20, "maxDurationSeconds": 600, "enabled": True},
        )
        assert put.status_code == 200, put.text
        seq = int(await redis.get(keys.config_seq) or 0)

        async def applied() -> bool:
            listed = (await cp.get("/workers")).json()["workers"]
            return any(w["pid"] == worker.pid and w["appliedSeq"] >= seq for w in listed)

        await wait_for(applied, timeout=30, interval=0.1)
        # The same 12 s audio is now too short for live-a, without any restart.
        await mq.publish(audio_event("live-a", "LIVE-2", 12, data=noise(200)))
        await wait_for(lambda: count("tooShort", 1), timeout=60)
        row = next(
            r
            for r in (await cp.get("/fleet/instances")).json()["instances"]
            if r["instance"] == "live-a"
        )
        assert (row["minDurationSeconds"], row["processed"], row["tooShort"]) == (20, 1, 1)
    assert worker.terminate() == 0, worker.output()
