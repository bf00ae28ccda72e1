"""Fixtures shared by every test: the real services, started once, and isolated namespaces.

Each test gets its own RabbitMQ vhost, Redis key prefix and S3 bucket, so tests (and several
test runs at once) never see each other's messages; PostgreSQL gets one database per run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import pytest
import redis.asyncio as aioredis

from fila import redisconn
from fila.dev import lifetime, services
from fila.keys import Keys
from fila.settings import Settings, from_env
from tests.support import Proc

ROOT = Path(__file__).resolve().parent.parent


def _base_from_env() -> Settings:
    env = {k: v for k, v in os.environ.items() if k.startswith("FILA_")}
    env.setdefault("FILA_DATA_DIR", str(ROOT / ".fila"))
    env.setdefault("FILA_LOG_LEVEL", "WARNING")
    return from_env(env, dotenv=None)


def _session_database(base: Settings) -> str:
    """A fresh database for this test run, named after the run."""
    name = f"fila_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _as_admin(base, f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(base.database_url)._replace(path=f"/{name}"))


def _drop_database(base: Settings, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    _as_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _as_admin(base: Settings, sql: str) -> None:
    """`sql` run in the server's `postgres` database (databases are created and dropped from
    outside them)."""
    import asyncpg

    async def run() -> None:
        admin = urlunsplit(urlsplit(base.database_url)._replace(path="/postgres"))
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def base_settings() -> Iterator[Settings]:
    """The real services, up (reused when already running), and a database for this run."""
    base = _base_from_env()
    services.up(base, report=lambda m: print(m, file=sys.stderr))
    db = _session_database(base)
    settings = base.replace(database_url=db)
    # piccolo_conf and any process started by tests read the environment.
    os.environ.update(settings.to_env())
    yield settings
    _drop_database(base, db)


def _management(settings: Settings) -> tuple[str, tuple[str, str]]:
    parts = urlsplit(settings.rabbitmq_management_url)
    return (
        f"{parts.scheme}://{parts.hostname}:{parts.port}",
        (parts.username or "guest", parts.password or "guest"),
    )


def create_vhost(settings: Settings, vhost: str) -> str:
    """Create a vhost with full rights for the URL's user; returns the AMQP URL for it."""
    base, auth = _management(settings)
    user = urlsplit(settings.rabbitmq_url).username or "guest"
    with httpx.Client(base_url=base, auth=auth, timeout=10) as client:
        client.put(f"/api/vhosts/{quote(vhost, safe='')}").raise_for_status()
        client.put(
            f"/api/permissions/{quote(vhost, safe='')}/{user}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
    return urlunsplit(urlsplit(settings.rabbitmq_url)._replace(path="/" + quote(vhost, safe="")))


def delete_vhost(settings: Settings, vhost: str) -> None:
    base, auth = _management(settings)
    with httpx.Client(base_url=base, auth=auth, timeout=10) as client:
        client.delete(f"/api/vhosts/{quote(vhost, safe='')}")


@pytest.fixture
async def settings(base_settings: Settings) -> AsyncIterator[Settings]:
    """Settings isolated for one test: own vhost, Redis prefix and bucket."""
    tag = uuid.uuid4().hex[:10]
    vhost = f"test-{tag}"
    amqp = await asyncio.to_thread(create_vhost, base_settings, vhost)
    isolated = base_settings.replace(
        rabbitmq_url=amqp,
        redis_prefix=f"test:{tag}:",
        s3_bucket=f"test-{tag}",
    )
    await services.ensure_bucket(isolated)
    yield isolated
    await asyncio.to_thread(delete_vhost, base_settings, vhost)
    # The embedded S3 keeps objects in memory: a whole run's buckets would add up.
    with contextlib.suppress(Exception):
        await services.drop_bucket(isolated)
    client = aioredis.from_url(base_settings.redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"test:{tag}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = redisconn.connect(settings)
    yield client
    await client.aclose()


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.redis_prefix)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start `fila <args>` with the given settings in the environment."""
    procs: list[Proc] = []

    def start(args: list[str], settings: Settings, **extra_env: str) -> Proc:
        log = tmp_path / f"proc-{len(procs)}-{args[0]}.log"
        env = {**os.environ, **settings.to_env(), **extra_env}
        handle = log.open("wb")
        popen = subprocess.Popen(
            [sys.executable, "-m", "fila", *args],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=str(ROOT),
            preexec_fn=lifetime.die_with_parent(),
        )
        handle.close()
        proc = Proc(popen, log)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.terminate()
