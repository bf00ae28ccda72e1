"""The control plane stays flat in memory while TUIs poll it (issue 20's leak, compressed).

Three live streams plus the polling of the overview, instances, workers and /metrics, far
faster than a TUI: before the fix every read opened an AMQP channel and left aio-pika's close
bookkeeping behind (about 1.2 MB a minute at one TUI's pace; here it would be tens of MB).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from fila.settings import Settings
from tests.support import Proc, wait_answering
from tests.test_controlplane_support import migrated, start_controlplane

Spawn = Callable[..., Proc]
__all__ = ["migrated"]

POLLED = ("/fleet/overview", "/fleet/instances", "/workers", "/metrics", "/readyz")
WARM_UP = 15.0
MEASURED = 45.0
MAX_GROWTH_KB = 3 * 1024
"""Allowed RSS growth over the measured span (the leak alone was ~20 MB at this pace)."""


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.usefixtures("migrated")
async def test_rss_flat_while_three_tuis_poll(settings: Settings, spawn: Spawn) -> None:
    proc, base = start_controlplane(spawn, settings)
    async with httpx.AsyncClient(
        base_url=base, timeout=30, headers={"apikey": settings.api_key}
    ) as client:
        await wait_answering(client, popen=proc.popen, output=proc.output)
        requests = 0

        async def stream() -> None:
            async with client.stream("GET", "/fleet/stream", timeout=None) as response:
                async for _ in response.aiter_lines():
                    pass

        async def poll() -> None:
            nonlocal requests
            while True:
                for path in POLLED:
                    response = await client.get(path)
                    assert response.status_code in (200, 503), (path, response.text)
                    requests += 1

        tasks = [asyncio.create_task(stream()) for _ in range(3)]
        tasks += [asyncio.create_task(poll()) for _ in range(3)]
        try:
            await asyncio.sleep(WARM_UP)
            start, samples = rss_kb(proc.pid), []
            started = time.monotonic()
            while time.monotonic() - started < MEASURED:
                await asyncio.sleep(5)
                samples.append(rss_kb(proc.pid))
                assert not any(t.done() for t in tasks), [t.exception() for t in tasks if t.done()]
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        growth = samples[-1] - start
        print(
            f"\ncontrol plane RSS {start / 1024:.1f} MB → {samples[-1] / 1024:.1f} MB over "
            f"{MEASURED:.0f} s, {requests} requests + 3 streams; samples (MB): "
            + ", ".join(f"{s / 1024:.1f}" for s in samples)
        )
        assert growth < MAX_GROWTH_KB, samples
