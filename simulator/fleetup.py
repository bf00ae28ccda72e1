"""Bring a fleet up for the demo and the bench: control plane, workers, webhooks to a receiver."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import httpx
import redis.asyncio as aioredis

from fila.keys import Keys
from fila.settings import Settings
from simulator.procs import ProcessGroup

PRINCIPAL_PATH = "/principal"
MONITORING_PATH = "/monitoring"


def cp_url(settings: Settings) -> str:
    return f"http://{settings.http_host}:{settings.http_port}"


async def start(
    procs: ProcessGroup,
    settings: Settings,
    *,
    ingest: int,
    delivery: int,
    receiver_url: str,
    monitoring: bool,
    redis: aioredis.Redis,
    say: Callable[[str], None] = lambda _: None,
    migrate: bool = True,
) -> None:
    """Control plane healthy, every worker heartbeating, webhooks pointed at the receiver."""
    if migrate:
        say("migrations")
        await procs.run("migrate", ["migrate"], timeout=180)
    say(f"control plane on {cp_url(settings)}")
    cp = await procs.start("controlplane", ["controlplane", "--no-migrate"])
    await wait_ready(cp_url(settings), lambda: cp.alive, tail=cp.tail)
    for n in range(ingest):
        await procs.start(f"ingest-{n + 1}", ["worker", "ingest"])
    for n in range(delivery):
        await procs.start(f"delivery-{n + 1}", ["worker", "delivery"])
    await _joined(procs, redis, Keys(settings.redis_prefix), ingest + delivery)
    say(f"{ingest} ingest + {delivery} delivery workers (logs in {procs.log_dir})")
    await configure_webhooks(settings, receiver_url, monitoring)
    say("webhooks → receiver (PUT /webhook/global/config)")


async def wait_ready(
    url: str,
    child_alive: Callable[[], bool],
    timeout: float = 120,
    tail: Callable[[], str] = lambda: "",
) -> None:
    """Poll the control plane's health probe until it answers (or its process died)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if not child_alive():
                raise RuntimeError(f"the control plane exited during startup\n{tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.3)
    raise RuntimeError(f"the control plane did not answer {url}/healthz in {timeout:.0f} s")


async def _joined(procs: ProcessGroup, redis: aioredis.Redis, keys: Keys, n: int) -> None:
    """Every worker started heartbeats in Redis (or one died, and says why)."""
    deadline = time.monotonic() + 90
    while await redis.zcard(keys.workers) < n:
        dead = procs.dead()
        if dead:
            raise RuntimeError(f"{dead[0].name} exited:\n{dead[0].tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not join the fleet")
        await asyncio.sleep(0.2)


async def configure_webhooks(settings: Settings, receiver_url: str, monitoring: bool) -> None:
    body = {
        "principal": {"enabled": True, "url": receiver_url + PRINCIPAL_PATH},
        "monitoramento": (
            {"enabled": True, "url": receiver_url + MONITORING_PATH}
            if monitoring
            else {"enabled": False}
        ),
    }
    async with httpx.AsyncClient(timeout=15) as client:
        answer = await client.put(
            f"{cp_url(settings)}/webhook/global/config",
            json=body,
            headers={"apikey": settings.api_key},
        )
    if answer.status_code >= 300:
        raise RuntimeError(
            f"PUT /webhook/global/config answered {answer.status_code}: {answer.text}"
        )
