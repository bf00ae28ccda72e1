"""The control plane's PostgreSQL engine (Piccolo) and its migrations."""

from __future__ import annotations

import asyncio
from urllib.parse import unquote, urlsplit

from piccolo.engine.postgres import PostgresEngine

from controlplane.tables import TABLES


def engine_config(url: str) -> dict[str, object]:
    """asyncpg connection arguments for a `postgresql://` URL."""
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or ""),
        "database": parts.path.lstrip("/") or "postgres",
    }


COMMAND_TIMEOUT = 30.0
"""Seconds one PostgreSQL statement may take (asyncpg's command_timeout)."""


async def open_engine(url: str, pool_size: int = 10) -> PostgresEngine:
    """An engine with a connection pool, bound to every table of the control plane."""
    engine = PostgresEngine(config=engine_config(url), log_queries=False)
    # A stalled server fails a query after COMMAND_TIMEOUT instead of holding its request.
    await engine.start_connection_pool(
        min_size=1, max_size=pool_size, command_timeout=COMMAND_TIMEOUT
    )
    for table in TABLES:
        table._meta.db = engine
    return engine


MIGRATION_LOCK = 0x46494C41
"""pg_advisory_lock key: replicas starting together migrate one after the other."""


async def migrate(url: str) -> bool:
    """Apply every committed migration (Piccolo reads piccolo_conf, i.e. the settings)."""
    import asyncpg
    from piccolo.apps.migrations.commands.forwards import run_forwards

    config = engine_config(url)
    lock = await asyncpg.connect(**config)
    try:
        await lock.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        result = await run_forwards(app_name="controlplane", migration_id="all")
        return bool(result.success)
    finally:
        await lock.close()


async def close_engine(engine: PostgresEngine, timeout: float = 10.0) -> None:
    """Close the pool gracefully, or terminate it if a connection is never given back."""
    pool = engine.pool
    if pool is None:
        return
    try:
        await asyncio.wait_for(pool.close(), timeout)
    except TimeoutError:
        pool.terminate()
    engine.pool = None
