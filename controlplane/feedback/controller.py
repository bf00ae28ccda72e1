"""The /process routes of the contract; the service comes from `app.state.feedback`.

The app builds `FeedbackService(settings, redis)` in its lifespan, stores it as
`app.state.feedback` and calls `start()`/`stop()`; this controller only reads it.
"""

from __future__ import annotations

from litestar import Controller, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from controlplane.errors import DependencyDown
from controlplane.feedback import schemas
from controlplane.feedback.service import FeedbackService


def provide_feedback_service(state: State) -> FeedbackService:
    service = state.get("feedback")
    if not isinstance(service, FeedbackService):
        raise DependencyDown("feedback", "service not started")
    return service


class FeedbackController(Controller):
    path = "/process"
    tags = ("feedback",)
    dependencies = {"feedback": Provide(provide_feedback_service, sync_to_thread=False)}  # noqa: RUF012

    @post("/start", status_code=200, summary="Start the reaction loop on a message")
    async def start(
        self, data: JSONBody[schemas.StartBody], feedback: NamedDependency[FeedbackService]
    ) -> schemas.StartResult:
        return await feedback.start_session(data)

    @post("/finish", status_code=200, summary="Final reaction (and text) for a session")
    async def finish(
        self, data: JSONBody[schemas.FinishBody], feedback: NamedDependency[FeedbackService]
    ) -> schemas.FinishResult:
        return await feedback.finish_session(data)

    @get("/status", summary="Active sessions and feedback stats")
    async def status(self, feedback: NamedDependency[FeedbackService]) -> schemas.StatusResult:
        return await feedback.status()

    @post("/cleanup-orphans", status_code=200, summary="End and remove abandoned sessions")
    async def cleanup_orphans(
        self, feedback: NamedDependency[FeedbackService]
    ) -> schemas.OrphansResult:
        return await feedback.cleanup_orphans()

    @delete("/{session_id:str}", status_code=200, summary="Drop a session without reacting")
    async def remove(
        self, session_id: FromPath[str], feedback: NamedDependency[FeedbackService]
    ) -> schemas.DeleteResult:
        return await feedback.delete_session(session_id)
