"""The /process routes of the contract; the service comes from `app.state.feedback`.

The app builds `FeedbackService(settings, redis)` in its lifespan, stores it as
`app.state.feedback` and calls `start()`/`stop()`; this controller only reads it.
"""

from __future__ import annotations

from litestar import Controller, Response, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
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

    @post(
        "/finish",
        status_code=200,
        summary="Final reaction (and text) for a session",
        responses={
            202: ResponseSpec(
                schemas.FinishResult,
                description="Not sent within FINISH_WAIT_SECONDS (5 s): `pending` is true, the "
                "reaction and text go on in the background, /process/status lists the session "
                "in `endingSessions` until they are sent or given up.",
            )
        },
    )
    async def finish(
        self, data: JSONBody[schemas.FinishBody], feedback: NamedDependency[FeedbackService]
    ) -> Response[schemas.FinishResult]:
        """200 with what was sent, or 202 within 5 s while Evolution API is slow or down."""
        result = await feedback.finish_session(data)
        return Response(result, status_code=202 if result.pending else 200)

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
