"""Fleet routes for operators and the TUI: per-instance table, overview, live stream, workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Literal, cast

import msgspec
from litestar import Controller, MediaType, Response, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.response import ServerSentEvent, Stream

from controlplane.errors import FieldError, NotFound
from controlplane.fleet.service import FleetService
from controlplane.runtime import Runtime
from fila import fleetquery
from fila.fleetquery import InstancesQuery
from fila.models import WorkerInfo, encode
from fila.views import FleetOverview, InstanceRow, InstancesView

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
    async def instances(
        self,
        fleet: NamedDependency[FleetService],
        sort: str = "instance",
        order: Literal["asc", "desc"] = "asc",
        q: str = "",
        offset: int = 0,
        limit: int | None = None,
    ) -> Response[InstancesView]:
        """A page of the live instances, sorted and filtered here; every one without `limit`
        (streamed, a slice of rows at a time)."""
        query = InstancesQuery(sort=sort, order=order, q=q, offset=offset, limit=limit)
        for field, rule in fleetquery.problems(query):
            raise FieldError(field, rule)
        if limit is None:  # the body is an InstancesView's JSON, as the annotation documents
            whole = Stream(fleet.export(query), media_type=MediaType.JSON)
            return cast("Response[InstancesView]", whole)
        return Response(await fleet.instances(query))

    @get("/fleet/instances/{instance:str}")
    async def instance(
        self, instance: FromPath[str], fleet: NamedDependency[FleetService]
    ) -> InstanceRow:
        """One instance, also after it left the live set, while its counters are retained."""
        row = await fleet.instance(instance)
        if row is None:
            raise NotFound(f"instance: no counters or filter for {instance}")
        return row

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
