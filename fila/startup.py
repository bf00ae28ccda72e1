"""A starting process waits (bounded) for each dependency, then fails in one line naming it.

A compose stack starts everything at once, so a dependency that refuses at first may still be
starting; one that never answers ends the process with the variable to fix, not a traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiormq
import asyncpg
import redis.asyncio as aioredis
import stamina
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fila import topology
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
    if isinstance(exc, ClientError):
        return _status(exc) >= 500
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | RedisConnectionError
        | RedisTimeoutError
        | aiormq.exceptions.AMQPConnectionError
        | asyncpg.CannotConnectNowError
        | EndpointConnectionError
        | ConnectTimeoutError
        | ReadTimeoutError
        | ConnectionClosedError,
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
        if settings.redis_mode != "single":
            # Any node (or sentinel) answering will do; a cluster client made in this
            # throwaway loop would leave connections the process's own loop cannot use.
            await _any_redis(settings)
            return
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


async def _any_redis(settings: Settings) -> None:
    """PING the URL's node then each of `redis_nodes` (sentinels answer PING too)."""
    first = urlsplit(settings.redis_url)
    addresses = [(first.hostname or "127.0.0.1", first.port or 6379), *settings.redis_node_list]
    if settings.redis_mode == "sentinel":
        addresses = settings.redis_node_list
    error: Exception = RedisConnectionError("no address")
    for host, port in addresses:
        client = aioredis.Redis(
            host=host,
            port=port,
            username=first.username,
            password=first.password if settings.redis_mode == "cluster" else None,
            ssl=first.scheme == "rediss",
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=CONNECT_TIMEOUT,
            retry=Retry(NoBackoff(), retries=0),
        )
        try:
            await client.ping()
            return
        except (RedisConnectionError, RedisTimeoutError) as exc:
            error = exc
        finally:
            await client.aclose()
    raise error


async def postgres(settings: Settings) -> None:
    async def probe() -> None:
        connection = await asyncpg.connect(settings.database_url, timeout=CONNECT_TIMEOUT)
        await connection.close()

    where = _where(settings.database_url, 5432)
    await wait_until(settings, "database_url", "PostgreSQL", where, probe)


class QueueTypeMismatch(Unreachable):
    """A queue of the other type than FILA_RABBITMQ_QUEUE_TYPE: the message says which, and
    what to do (a start stops there rather than in a channel-closed traceback)."""


async def rabbitmq(settings: Settings) -> None:
    """Wait for a node (any of a cluster's), then check the queues' type against the settings."""
    opened: list[AbstractConnection] = []

    async def probe() -> None:
        opened.append(await topology.connect_once(settings, timeout=CONNECT_TIMEOUT))

    urls = settings.rabbitmq_urls
    where = ", ".join(_where(url, 5672) for url in urls)
    await wait_until(settings, "rabbitmq_url", "RabbitMQ", where, probe)
    try:
        await topology.check_queue_types(opened[-1], settings)
    except topology.QueueMismatch as exc:
        raise QueueTypeMismatch(str(exc)) from None
    finally:
        await opened[-1].close()


async def robust_rabbitmq(settings: Settings) -> AbstractRobustConnection:
    """A worker's long-lived connection, waited for like every dependency (RabbitMQ may still be
    starting); once up it reconnects by itself. Unreachable (one line) if it never answers."""
    opened: list[AbstractRobustConnection] = []

    async def probe() -> None:
        opened.append(await topology.connect(settings))

    where = ", ".join(_where(url, 5672) for url in settings.rabbitmq_urls)
    await wait_until(settings, "rabbitmq_url", "RabbitMQ", where, probe)
    return opened[-1]


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _s3_client(settings: Settings) -> Any:
    from fila import s3

    config = Config(
        connect_timeout=CONNECT_TIMEOUT, read_timeout=CONNECT_TIMEOUT, retries={"max_attempts": 1}
    )
    return s3.client(settings, config=config)


async def s3(settings: Settings) -> str | None:
    """Wait for S3, then create the audio bucket if it is missing (a fresh MinIO has none).

    Credentials that may not read or create buckets (a restricted IAM role) are not fatal:
    the bucket may well exist; the returned one-line warning says what to check.
    """
    bucket = settings.s3_bucket
    endpoint = settings.s3_endpoint_url
    where = _where(endpoint, 443 if endpoint.startswith("https") else 80) if endpoint else "AWS"
    found: list[int] = []

    async def head() -> None:
        async with _s3_client(settings) as client:
            try:
                await client.head_bucket(Bucket=bucket)
                found.append(200)
            except ClientError as exc:
                if _transient(exc):
                    raise
                found.append(_status(exc))

    await wait_until(settings, "s3_endpoint_url", "S3", where, head)
    status = found[-1]
    keys = f"{env_name('s3_access_key')}/{env_name('s3_secret_key')}"
    if status == 200:
        return None
    if status == 403:
        return (
            f"{env_name('s3_bucket')}: S3 at {where} refused to show bucket {bucket!r} (403): "
            f"assuming it exists; check {keys} if uploads fail"
        )
    if status != 404:
        raise Unreachable(
            f"{env_name('s3_bucket')}: S3 at {where} answered {status} for bucket {bucket!r} "
            f"(check {env_name('s3_region')} and the bucket name)"
        )
    return await _create_bucket(settings, where, keys)


async def _create_bucket(settings: Settings, where: str, keys: str) -> str | None:
    bucket = settings.s3_bucket
    extra: dict[str, Any] = {}
    if settings.s3_region != "us-east-1":
        extra["CreateBucketConfiguration"] = {"LocationConstraint": settings.s3_region}
    async with _s3_client(settings) as client:
        try:
            await client.create_bucket(Bucket=bucket, **extra)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "BucketAlreadyOwnedByYou":
                return None
            if _status(exc) == 403:
                return (
                    f"{env_name('s3_bucket')}: bucket {bucket!r} does not exist at {where} and "
                    f"{keys} may not create it (403): create it, or every upload will fail"
                )
            raise Unreachable(
                f"{env_name('s3_bucket')}: S3 at {where} would not create bucket {bucket!r}: "
                f"{code or _status(exc)}"
            ) from None
        except BotoCoreError as exc:
            raise Unreachable(
                f"{env_name('s3_endpoint_url')}: S3 unreachable at {where}: {exc}"
            ) from None
    return None
