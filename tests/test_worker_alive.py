"""`fila worker alive ROLE`, the workers' container health check, against a real worker."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable

from fila.settings import Settings
from tests.conftest import ROOT
from tests.support import Proc, wait_for
from tests.test_delivery import fast

Spawn = Callable[..., Proc]


async def _alive(settings: Settings, role: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fila",
        "worker",
        "alive",
        role,
        env={**os.environ, **settings.to_env()},
        cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_alive_follows_the_heartbeat_of_this_hosts_worker(
    settings: Settings, spawn: Spawn
) -> None:
    assert (await _alive(settings, "delivery"))[0] == 1  # nothing runs yet
    worker = spawn(["worker", "delivery"], fast(settings, log_level="INFO"))
    await wait_for(lambda: "worker started" in worker.output(), timeout=60)

    code, out = await _alive(settings, "delivery")
    assert (code, out.strip()) == (0, "delivery worker alive on this host")
    assert (await _alive(settings, "ingest"))[0] == 1  # another role is not counted

    assert worker.terminate() == 0
    code, out = await _alive(settings, "delivery")
    assert (code, out.strip()) == (1, "delivery worker not heartbeating on this host")


async def test_alive_names_a_wrong_role(settings: Settings) -> None:
    code, out = await _alive(settings, "cleanup")
    assert code == 2 and "ROLE" in out
