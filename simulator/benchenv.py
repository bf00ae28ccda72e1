"""Namespaces of their own for a bench run (RabbitMQ vhost, Redis prefix, S3 bucket,
PostgreSQL database, free ports), removed afterwards, so a bench never touches other data.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from fila import redisconn
from fila.dev import services
from fila.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _management(settings: Settings) -> tuple[str, tuple[str, str]]:
    parts = urlsplit(settings.rabbitmq_management_url)
    return (
        f"{parts.scheme}://{parts.hostname}:{parts.port}",
        (parts.username or "guest", parts.password or "guest"),
    )


async def _vhost(settings: Settings, vhost: str, create: bool) -> str:
    base, auth = _management(settings)
    user = urlsplit(settings.rabbitmq_url).username or "guest"
    name = quote(vhost, safe="")
    async with httpx.AsyncClient(base_url=base, auth=auth, timeout=15) as client:
        if not create:
            await client.delete(f"/api/vhosts/{name}")
            return ""
        (await client.put(f"/api/vhosts/{name}")).raise_for_status()
        (
            await client.put(
                f"/api/permissions/{name}/{user}",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            )
        ).raise_for_status()
    return urlunsplit(urlsplit(settings.rabbitmq_url)._replace(path="/" + name))


async def database(settings: Settings, name: str, create: bool) -> str:
    import asyncpg

    admin = urlunsplit(urlsplit(settings.database_url)._replace(path="/postgres"))
    conn = await asyncpg.connect(admin)
    try:
        if create:
            await conn.execute(f'CREATE DATABASE "{name}"')
        else:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
    return urlunsplit(urlsplit(settings.database_url)._replace(path=f"/{name}"))


async def _drop_redis(settings: Settings) -> None:
    client = redisconn.connect(settings)
    try:
        batch = [k async for k in client.scan_iter(match=f"{settings.redis_prefix}*", count=1000)]
        for start in range(0, len(batch), 500):
            await client.delete(*batch[start : start + 500])
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def isolated(base: Settings) -> AsyncIterator[Settings]:
    """Settings pointing at fresh namespaces on the same servers; all removed on exit."""
    tag = uuid.uuid4().hex[:8]
    vhost = f"bench-{tag}"
    db_name = f"fila_bench_{tag}"
    amqp = await _vhost(base, vhost, create=True)
    db_url = ""
    settings = base
    try:
        db_url = await database(base, db_name, create=True)
        port = free_port()
        settings = base.replace(
            rabbitmq_url=amqp,
            redis_prefix=f"bench:{tag}:",
            s3_bucket=f"bench-{tag}",
            database_url=db_url,
            http_port=port,
            server_url=f"http://127.0.0.1:{port}",
            evolution_url=f"http://127.0.0.1:{free_port()}",
        )
        await services.ensure_bucket(settings)
        yield settings
    finally:
        with contextlib.suppress(Exception):
            await _vhost(base, vhost, create=False)
        if settings is not base:  # only what this run created
            with contextlib.suppress(Exception):
                await _drop_redis(settings)
            with contextlib.suppress(Exception):
                await services.drop_bucket(settings)
        if db_url:
            with contextlib.suppress(Exception):
                await database(base, db_name, create=False)
