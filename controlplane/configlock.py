"""One writer at a time per configuration document, across replicas, PostgreSQL and Redis alike.

A write reads, merges, stores in PostgreSQL and mirrors into Redis inside one transaction that
holds a transaction-level advisory lock: concurrent partial updates cannot undo each other, the
Redis mirror is written in the order PostgreSQL commits, and a failing mirror rolls the row back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from controlplane.tables import ConfigEntry

FILTERS = "filters"
EMERGENCY = "emergency"
WEBHOOK = "webhook"
RATELIMIT = "ratelimit"
CLEANUP = "cleanup"
FLEET = "fleet"
"""Pause/resume/drain: not a document, but recorded in the history under a lock all the same."""
ALL = (FILTERS, EMERGENCY, WEBHOOK, RATELIMIT, CLEANUP)
"""A write taking several locks (config import) takes them in this order."""


@asynccontextmanager
async def config_write(*documents: str) -> AsyncIterator[None]:
    """Hold each document's lock in a transaction; every query of the block runs inside it.

    Inside another `config_write` this joins its transaction (the locks are re-entrant)."""
    async with ConfigEntry._meta.db.transaction():
        for document in documents:
            await ConfigEntry.raw(
                "SELECT pg_advisory_xact_lock(hashtext({}))", f"fila.config.{document}"
            ).run()
        yield
