"""Queue routes: stats (contract), pause/resume/drain and the live rate limit (operators)."""

from __future__ import annotations

from litestar import Controller, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from controlplane.queue.schemas import (
    ControlBody,
    ControlResult,
    QueueStats,
    RateLimitPatch,
    WeightBody,
    WeightRecord,
)
from controlplane.queue.service import QueueService
from controlplane.runtime import Runtime
from fila.models import RateLimitConfig


def provide(rt: NamedDependency[Runtime]) -> QueueService:
    return QueueService(rt)


DEPENDENCIES = {"queue": Provide(provide, sync_to_thread=False)}


class QueueController(Controller):
    tags = ("queue",)
    dependencies = DEPENDENCIES

    @get("/queue/stats")
    async def stats(self, queue: NamedDependency[QueueService]) -> QueueStats:
        """Depth read from RabbitMQ itself; counters from Redis."""
        return await queue.stats()

    @post("/queue/pause", status_code=200)
    async def pause(
        self,
        queue: NamedDependency[QueueService],
        data: JSONBody[ControlBody | None] = None,
    ) -> ControlResult:
        seq = await queue.control("pause", data.role if data else None)
        return ControlResult(success=True, seq=seq)

    @post("/queue/resume", status_code=200)
    async def resume(
        self,
        queue: NamedDependency[QueueService],
        data: JSONBody[ControlBody | None] = None,
    ) -> ControlResult:
        seq = await queue.control("resume", data.role if data else None)
        return ControlResult(success=True, seq=seq)

    @post("/queue/drain", status_code=200)
    async def drain(
        self,
        queue: NamedDependency[QueueService],
        data: JSONBody[ControlBody | None] = None,
    ) -> ControlResult:
        """Workers finish what they hold, then leave the fleet."""
        seq = await queue.control("drain", data.role if data else None)
        return ControlResult(success=True, seq=seq)

    @get("/ratelimit")
    async def get_ratelimit(self, queue: NamedDependency[QueueService]) -> RateLimitConfig:
        return await queue.ratelimit()

    @put("/ratelimit")
    async def put_ratelimit(
        self, data: JSONBody[RateLimitPatch], queue: NamedDependency[QueueService]
    ) -> RateLimitConfig:
        """Partial change applied live by every worker."""
        return await queue.set_ratelimit(data)

    @get("/instance/{instance:str}/weight")
    async def get_weight(
        self, instance: FromPath[str], queue: NamedDependency[QueueService]
    ) -> WeightRecord:
        """1 for an instance never weighted."""
        return await queue.weight(instance)

    @put("/instance/{instance:str}/weight")
    async def put_weight(
        self,
        instance: FromPath[str],
        data: JSONBody[WeightBody],
        queue: NamedDependency[QueueService],
    ) -> WeightRecord:
        """Heavier instances get a larger fair share and overtake on global.messages (live)."""
        return await queue.set_weight(instance, data.weight)
