"""Evolution API's per-instance RabbitMQ mode: Fila's ingest queue bound to every instance's
exchange (RABBITMQ_GLOBAL_ENABLED=false publishes to an exchange named after the instance).

The instances come from FILA_EVOLUTION_INSTANCES or from `GET /instance/fetchInstances`, read
again every FILA_EVOLUTION_INSTANCES_REFRESH_SECONDS. Bindings of deleted instances are left:
nothing publishes to their exchanges, and a re-created instance is bound already.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aio_pika
import httpx
import msgspec
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import AMQPError

from fila import logging as flog
from fila.models import instance_problem
from fila.settings import Settings

log = flog.get("ingest.instances")

MAX_LIST_BYTES = 32 * 1024 * 1024
"""fetchInstances answers every instance with its settings: generous, but bounded."""


class DiscoveryError(Exception):
    """Evolution API did not give the instance list (down, refused the key, bad answer)."""


async def declare_instance_exchange(channel: AbstractChannel, instance: str) -> Any:
    """As Evolution API asserts it (topic, durable, not auto-delete, no arguments): a
    declaration that differed would fail on whichever side came second."""
    return await channel.declare_exchange(
        instance, aio_pika.ExchangeType.TOPIC, durable=True, auto_delete=False
    )


def instance_names(payload: Any) -> list[str]:
    """Names in a fetchInstances answer: v2 rows carry `name`, v1 rows `instance.instanceName`."""
    if not isinstance(payload, list):
        raise DiscoveryError("fetchInstances answer is not a list")
    names: list[str] = []
    for row in payload:
        if not isinstance(row, dict):
            continue
        name = row.get("name")
        inner = row.get("instance")
        if name is None and isinstance(inner, dict):
            name = inner.get("instanceName")
        if isinstance(name, str) and instance_problem(name) is None:
            names.append(name)
    return names


async def fetch_instances(settings: Settings, client: httpx.AsyncClient) -> list[str]:
    """The instance names Evolution API has now, asked with its global key."""
    url = f"{settings.evolution_url.rstrip('/')}/instance/fetchInstances"
    try:
        async with client.stream(
            "GET", url, headers={"apikey": settings.evolution_api_key}, timeout=15.0
        ) as response:
            if response.status_code != 200:
                raise DiscoveryError(f"fetchInstances answered {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_LIST_BYTES:
                    raise DiscoveryError(f"fetchInstances answer exceeds {MAX_LIST_BYTES} bytes")
    except httpx.HTTPError as exc:
        raise DiscoveryError(f"Evolution API unreachable: {type(exc).__name__}") from exc
    try:
        payload = msgspec.json.decode(bytes(body))
    except msgspec.DecodeError as exc:
        raise DiscoveryError("fetchInstances answer is not JSON") from exc
    return instance_names(payload)


class InstanceBinder:
    """One per ingest worker; every worker binds the same names, which RabbitMQ takes as one."""

    def __init__(
        self, settings: Settings, connection: AbstractRobustConnection, client: httpx.AsyncClient
    ) -> None:
        self.settings = settings
        self.connection = connection
        self.client = client
        self.bound: set[str] = set()
        self.refreshed = asyncio.Event()
        """Set after each pass (tests and start-up logs wait on it)."""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="instance-binder")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:  # never let the binder die: the next pass tries again
                log.warning("instance exchanges not bound", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.settings.evolution_instances_refresh_seconds)

    async def names(self) -> list[str]:
        """Configured instances, or Evolution API's list (previous names kept if it fails)."""
        configured = self.settings.evolution_instance_list
        if configured:
            return configured
        try:
            return await fetch_instances(self.settings, self.client)
        except DiscoveryError as exc:
            log.warning("instance list unavailable, bindings kept", error=str(exc))
            return sorted(self.bound)

    async def refresh(self) -> set[str]:
        """Declare and bind every instance's exchange (idempotent: repairs lost bindings too)."""
        names = await self.names()
        new = [n for n in names if n not in self.bound]
        done = await self._bind(names)
        self.bound |= done
        if new:
            log.info("instance exchanges bound", new=len([n for n in new if n in done]))
        self.refreshed.set()
        return done

    async def _bind(self, names: list[str]) -> set[str]:
        """A fresh channel per pass; one refused declaration (the name exists as another kind
        of exchange) closes only that channel, and the rest go on with a new one."""
        done: set[str] = set()
        channel: AbstractChannel | None = None
        try:
            for name in names:
                if channel is None or channel.is_closed:
                    channel = await self.connection.channel()
                    queue = await channel.get_queue(self.settings.ingest_queue, ensure=True)
                try:
                    exchange = await declare_instance_exchange(channel, name)
                    await queue.bind(exchange, routing_key=self.settings.evolution_routing_key)
                except AMQPError as exc:
                    log.warning("instance exchange refused", instance=name, error=str(exc))
                    with contextlib.suppress(Exception):
                        await channel.close()
                    channel = None
                    continue
                done.add(name)
        finally:
            if channel is not None and not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()
        return done
