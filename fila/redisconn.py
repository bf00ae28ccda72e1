"""One way to open Redis for every process: a single node, a Redis Cluster or a Sentinel master.

`FILA_REDIS_MODE` chooses. Callers see one client type (`redis.asyncio.Redis`): Fila uses only
commands the three shapes share, with keys laid out for Cluster slots (see `fila.keys`).
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelManagedConnection
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ClusterDownError, NoScriptError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fila.settings import Settings

KEEPALIVE = {
    getattr(socket, name): value
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if hasattr(socket, name)
}
"""A peer gone without a FIN (partition, NAT drop) is found in ~25 s, blocking reads included."""

FAILOVER_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    SlotNotCoveredError,
    TryAgainError,
)
"""What a cluster answers while a master is down and before its replica takes over."""


def torn_connection(exc: BaseException) -> bool:
    """redis-py 8.1's cluster client can use a connection another caller is still opening (its
    writer still None): an AttributeError from inside redis-py that is a connection fault."""
    if not isinstance(exc, AttributeError) or "NoneType" not in str(exc):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "/redis/" in tb.tb_frame.f_code.co_filename


def connect(settings: Settings, max_connections: int = 64) -> aioredis.Redis:
    """A client whose pool blocks instead of failing under bursts, and retries reconnects."""
    if settings.redis_mode == "cluster":
        return cluster(settings, max_connections)
    if settings.redis_mode == "sentinel":
        return sentinel(settings, max_connections)
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=max_connections,
        timeout=20,
        health_check_interval=15,
        socket_connect_timeout=5,
        socket_keepalive=True,
        socket_keepalive_options=KEEPALIVE,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=8),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return aioredis.Redis(connection_pool=pool)


def _url_options(settings: Settings) -> tuple[str, int, dict[str, Any]]:
    """Host, port and the connection options (password, TLS, db) `redis_url` carries."""
    options = dict(parse_url(settings.redis_url))
    host = str(options.pop("host", "127.0.0.1"))
    port = int(str(options.pop("port", 6379)))
    options.pop("path", None)
    return host, port, options


def cluster(settings: Settings, max_connections: int = 64) -> aioredis.Redis:
    """Redis Cluster; typed as `Redis` because Fila keeps to the commands both answer alike."""
    host, port, options = _url_options(settings)
    options.pop("db", None)  # a cluster has database 0 only
    if options.pop("connection_class", None) is not None:
        options["ssl"] = True
    seeds = [ClusterNode(host, port)] + [ClusterNode(h, p) for h, p in settings.redis_node_list]
    client = PatientCluster(
        startup_nodes=seeds,
        patience=settings.startup_wait_seconds,
        max_connections=max_connections,
        health_check_interval=15,
        socket_connect_timeout=5,
        socket_keepalive=True,
        socket_keepalive_options=KEEPALIVE,
        retry=Retry(NoBackoff(), retries=3),
        **options,
    )
    return cast(aioredis.Redis, client)


def sentinel(settings: Settings, max_connections: int = 64) -> aioredis.Redis:
    """The master Sentinel names; a failover is found again through the sentinels on retry."""
    _, _, options = _url_options(settings)
    options.pop("connection_class", None)
    watchers = Sentinel(  # type: ignore[no-untyped-call]
        settings.redis_node_list,
        sentinel_kwargs={"socket_connect_timeout": 5, "socket_timeout": 5},
        socket_connect_timeout=5,
        socket_keepalive=True,
        socket_keepalive_options=KEEPALIVE,
        health_check_interval=15,
        retry=Retry(
            ExponentialBackoff(cap=1.0, base=0.05),
            retries=max(8, int(settings.startup_wait_seconds)),
        ),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        **options,
    )
    master = watchers.master_for(
        settings.redis_sentinel_master,
        max_connections=max_connections,
        check_connection=True,
        connection_class=SentinelMasterConnection,
    )
    return cast(aioredis.Redis, master)


class SentinelMasterConnection(SentinelManagedConnection):
    """A connection to the master the sentinels name, asked again on every reconnect.

    redis-py 8.1 reconnects a dropped connection (before sending a command) to the address it had,
    not through the sentinels: each command in flight when the master was killed re-dialled it
    for the whole retry budget (~27 s) and failed, though its replica was promoted in ~3 s.
    """

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if retry_socket_connect and not self.is_connected:
            # Each try asks the sentinels, then comes back here with retry_socket_connect=False.
            await self.connect()  # type: ignore[no-untyped-call]
            return
        await super().connect_check_health(check_health, retry_socket_connect)


class PatientCluster(RedisCluster):
    """A cluster client that waits out a failover (bounded) instead of failing the first command.

    redis-py retries at once and a few times only; a master's replica takes seconds to be
    promoted, so each command is retried with a backoff until `patience` seconds have passed.
    """

    def __init__(self, *args: Any, patience: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.patience = patience
        self.scripts: list[AsyncScript] = []

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.patience
        delay = 0.05
        while True:
            try:
                return await super().execute_command(*args, **kwargs)
            except (*FAILOVER_ERRORS, AttributeError) as exc:
                if isinstance(exc, AttributeError) and not torn_connection(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    def register_script(self, script: Any) -> AsyncScript:  # type: ignore[override]
        """Remembered, so a pipeline meeting a node without the script can load it there."""
        registered = AsyncScript(self, script)
        self.scripts.append(registered)
        return registered

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        """Pipelines wait out a failover too (their commands are queued again and resent)."""
        if shard_hint:
            return super().pipeline(transaction, shard_hint)
        return PatientPipeline(self, transaction)  # type: ignore[abstract]


class PatientPipeline(ClusterPipeline):
    """A cluster pipeline resent, within the client's patience, when a failover interrupts it;
    a transaction queued at `execute` (redis-py 8.1 queues each command in a thread's loop)."""

    def __init__(self, client: PatientCluster, transaction: bool | None = None) -> None:
        super().__init__(client, transaction)
        self._patient = client
        self._queued: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        self._queued.append((args, dict(kwargs)))
        if self._transaction:  # that thread's loop could connect the client, then close
            return self
        return super().execute_command(*args, **kwargs)

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        """Queued (redis-py blocks it, and awaiting the pipeline would empty it): `execute`
        loads the scripts a node lacks."""
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    async def _enqueue(self, queued: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> None:
        """Queue the commands again (after a failed try), a transaction's in this loop."""
        strategy = cast(Any, self._execution_strategy)
        for args, kwargs in queued:
            if self._transaction:
                await strategy._execute_command(*args, **kwargs)
            else:
                super().execute_command(*args, **kwargs)

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        queued, self._queued = self._queued, []
        deadline = time.monotonic() + self._patient.patience
        delay = 0.05
        pending = bool(self._transaction)
        while True:
            try:
                if pending:
                    await self._enqueue(queued)
                return await super().execute(raise_on_error, allow_redirections)
            except (*FAILOVER_ERRORS, NoScriptError, AttributeError) as exc:
                if isinstance(exc, AttributeError) and not torn_connection(exc):
                    raise
                await self.reset()  # type: ignore[no-untyped-call]
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
                if isinstance(exc, NoScriptError):  # a promoted replica may lack the cache
                    for script in self._patient.scripts:
                        await self._patient.script_load(script.script)
            pending = True
