"""Probes: `/healthz` (the process answers) and `/readyz` (every dependency answers)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Controller, Response, get
from litestar.di import NamedDependency

from controlplane.auth import PUBLIC
from controlplane.runtime import Runtime
from fila.views import DependencyHealth

PROBE_TIMEOUT = 3.0


async def _probe(name: str, check: Callable[[], Awaitable[Any]]) -> DependencyHealth:
    try:
        await asyncio.wait_for(check(), PROBE_TIMEOUT)
    except Exception as exc:
        return DependencyHealth(name=name, ok=False, detail=str(exc) or type(exc).__name__)
    return DependencyHealth(name=name, ok=True)


async def _amqp(rt: Runtime) -> None:
    if rt.amqp.is_closed:
        raise ConnectionError("connection closed")
    await rt.queue_reads.counts("global.messages")


async def dependencies(rt: Runtime) -> list[DependencyHealth]:
    """Redis, PostgreSQL, RabbitMQ and S3, probed at once."""
    return list(
        await asyncio.gather(
            _probe("redis", rt.redis.ping),
            _probe("postgresql", lambda: rt.engine.run_ddl("SELECT 1")),
            _probe("rabbitmq", lambda: _amqp(rt)),
            _probe("s3", lambda: rt.s3.head_bucket(Bucket=rt.settings.s3_bucket)),
        )
    )


class HealthController(Controller):
    tags = ("health",)

    @get("/healthz", opt=PUBLIC)
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", opt=PUBLIC)
    async def readyz(self, rt: NamedDependency[Runtime]) -> Response[dict[str, Any]]:
        """503 naming every dependency that does not answer."""
        checks = await dependencies(rt)
        down = [c.name for c in checks if not c.ok]
        body: dict[str, Any] = {
            "status": "ready" if not down else "not ready",
            "dependencies": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
        }
        if down:
            body |= {"statusCode": 503, "message": f"not ready: {', '.join(down)} down"}
            return Response(body, status_code=503)
        return Response(body, status_code=200)
