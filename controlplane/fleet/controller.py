"""Fleet routes for operators and the TUI: per-instance table, overview, live stream, workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency, Provide
from litestar.response import ServerSentEvent

from controlplane.fleet.service import FleetService
from controlplane.runtime import Runtime
from fila.models import WorkerInfo, encode
from fila.views import FleetOverview, InstancesView

STREAM_SECONDS = 1.0


class Workers(msgspec.Struct, kw_only=True):
    workers: list[WorkerInfo]


def provide(rt: NamedDependency[Runtime]) -> FleetService:
    return FleetService(rt)


DEPENDENCIES = {"fleet": Provide(provide, sync_to_thread=False)}


class FleetController(Controller):
    tags = ("fleet",)
    dependencies = DEPENDENCIES

    @get("/fleet/instances")
    async def instances(self, fleet: NamedDependency[FleetService]) -> InstancesView:
        """Every instance seen or configured, in one call."""
        return await fleet.instances()

    @get("/fleet/overview")
    async def overview(self, fleet: NamedDependency[FleetService]) -> FleetOverview:
        return await fleet.overview()

    @get("/fleet/stream")
    async def stream(self, fleet: NamedDependency[FleetService]) -> ServerSentEvent:
        """One `data: <FleetOverview JSON>` event per second until the client goes."""

        async def events() -> AsyncIterator[str]:
            while True:
                yield encode(await fleet.overview()).decode()
                await asyncio.sleep(STREAM_SECONDS)

        return ServerSentEvent(events())

    @get("/workers")
    async def workers(self, fleet: NamedDependency[FleetService]) -> Workers:
        """Alive workers (heartbeat younger than the worker TTL)."""
        return Workers(workers=await fleet.workers())
