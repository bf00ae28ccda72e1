"""S3 cleanup routes of the contract."""

from __future__ import annotations

from litestar import Controller, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from controlplane.cleanup.schemas import RunResult, Schedule, SchedulePatch, Status
from controlplane.cleanup.service import CleanupService
from controlplane.runtime import Runtime


def provide(rt: NamedDependency[Runtime]) -> CleanupService:
    return CleanupService(rt)


DEPENDENCIES = {"cleanup": Provide(provide, sync_to_thread=False)}


class CleanupController(Controller):
    path = "/cleanup"
    tags = ("cleanup",)
    dependencies = DEPENDENCIES

    @get("/schedule")
    async def get_schedule(self, cleanup: NamedDependency[CleanupService]) -> Schedule:
        return await cleanup.schedule()

    @put("/schedule")
    async def put_schedule(
        self, data: JSONBody[SchedulePatch], cleanup: NamedDependency[CleanupService]
    ) -> Schedule:
        """Partial change; the cron is rescheduled at once."""
        return await cleanup.update(data)

    @post("/execute", status_code=200)
    async def execute(self, cleanup: NamedDependency[CleanupService]) -> RunResult:
        """Run now (409 if a run is already going on somewhere in the fleet)."""
        return await cleanup.run(trigger="manual")

    @get("/status")
    async def status(self, cleanup: NamedDependency[CleanupService]) -> Status:
        return await cleanup.status()
