"""One way to open Redis for every process: a pool that waits for a free connection."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis.asyncio as aioredis
import stamina
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fila.settings import Settings, env_name


def connect(settings: Settings, max_connections: int = 64) -> aioredis.Redis:
    """A client whose pool blocks instead of failing under bursts, and retries reconnects."""
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=max_connections,
        timeout=20,
        health_check_interval=15,
        socket_connect_timeout=5,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=8),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return aioredis.Redis(connection_pool=pool)


class RedisUnreachable(Exception):
    """Redis did not answer a starting process in time; the message is one line."""


def _transient(exc: Exception) -> bool:
    """Refused/timed-out connections may be a server still starting; a wrong password is not."""
    return isinstance(exc, OSError | RedisConnectionError | RedisTimeoutError) and not isinstance(
        exc, AuthenticationError
    )


async def wait_ready(settings: Settings) -> None:
    """Ping until Redis answers, for at most `redis_wait_seconds` (a compose stack may still be
    starting), so a start against a dead Redis ends in one line instead of a traceback."""
    parts = urlsplit(settings.redis_url)
    where = parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"
    client = aioredis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=5,
        socket_timeout=5,
        retry=Retry(NoBackoff(), retries=0),
    )
    try:
        async for attempt in stamina.retry_context(
            on=_transient, attempts=None, timeout=settings.redis_wait_seconds, wait_max=2.0
        ):
            with attempt:
                await client.ping()
    except (OSError, RedisError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise RedisUnreachable(
            f"{env_name('redis_url')}: Redis unreachable at {where} "
            f"(waited up to {settings.redis_wait_seconds:g}s): {reason}"
        ) from None
    finally:
        await client.aclose()
