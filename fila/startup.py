"""A starting process waits (bounded) for each dependency, then fails in one line naming it.

A compose stack starts everything at once, so a dependency that refuses at first may still be
starting; one that never answers ends the process with the variable to fix, not a traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aio_pika
import aiormq
import asyncpg
import redis.asyncio as aioredis
import stamina
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fila.settings import Settings, env_name

CONNECT_TIMEOUT = 5.0
"""One connection attempt; the whole wait is `startup_wait_seconds`."""


class Unreachable(Exception):
    """A dependency did not answer a starting process in time; the message is one line."""


def _where(url: str, default_port: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or default_port}"


def _transient(exc: Exception) -> bool:
    """Refused or timed-out connections may be a server still starting; a bad login is not."""
    if isinstance(exc, AuthenticationError | asyncpg.InvalidAuthorizationSpecificationError):
        return False
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
        return False
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | RedisConnectionError
        | RedisTimeoutError
        | aiormq.exceptions.AMQPConnectionError
        | asyncpg.CannotConnectNowError,
    )


async def wait_until(
    settings: Settings, field: str, what: str, where: str, probe: Callable[[], Awaitable[None]]
) -> None:
    """Retry `probe` while it fails transiently, up to `startup_wait_seconds`."""
    try:
        async for attempt in stamina.retry_context(
            on=_transient, attempts=None, timeout=settings.startup_wait_seconds, wait_max=2.0
        ):
            with attempt:
                await probe()
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise Unreachable(
            f"{env_name(field)}: {what} unreachable at {where} "
            f"(waited up to {settings.startup_wait_seconds:g}s): {reason}"
        ) from None


async def redis(settings: Settings) -> None:
    async def probe() -> None:
        client = aioredis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=CONNECT_TIMEOUT,
            retry=Retry(NoBackoff(), retries=0),
        )
        try:
            await client.ping()
        except RedisError as exc:
            if isinstance(exc, RedisConnectionError | RedisTimeoutError | AuthenticationError):
                raise
            raise RedisConnectionError(str(exc)) from exc
        finally:
            await client.aclose()

    await wait_until(settings, "redis_url", "Redis", _where(settings.redis_url, 6379), probe)


async def postgres(settings: Settings) -> None:
    async def probe() -> None:
        connection = await asyncpg.connect(settings.database_url, timeout=CONNECT_TIMEOUT)
        await connection.close()

    where = _where(settings.database_url, 5432)
    await wait_until(settings, "database_url", "PostgreSQL", where, probe)


async def rabbitmq(settings: Settings) -> None:
    async def probe() -> None:
        connection = await aio_pika.connect(settings.rabbitmq_url, timeout=CONNECT_TIMEOUT)
        await connection.close()

    where = _where(settings.rabbitmq_url, 5672)
    await wait_until(settings, "rabbitmq_url", "RabbitMQ", where, probe)
