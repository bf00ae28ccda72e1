"""The control plane: a Litestar app whose lifespan holds every connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, RedocRenderPlugin, SwaggerRenderPlugin

from controlplane.auth import require_apikey
from controlplane.cleanup.controller import CleanupController
from controlplane.cleanup.scheduler import CleanupScheduler
from controlplane.config.controller import ConfigController
from controlplane.errors import HANDLERS
from controlplane.feedback.controller import FeedbackController
from controlplane.feedback.service import FeedbackService
from controlplane.filters.controller import FilterController
from controlplane.fleet.controller import FleetController
from controlplane.health import HealthController
from controlplane.history.service import prune
from controlplane.ingest.controller import IngestController
from controlplane.methods import options_answer
from controlplane.metrics import MetricsController
from controlplane.openapi import refine
from controlplane.queue.controller import QueueController
from controlplane.queue.deadletters import DeadLetterController
from controlplane.runtime import Runtime, bounded, open_runtime
from controlplane.startup import mirror_config
from controlplane.strictbody import strict_body
from controlplane.webhooks.controller import WebhookController
from fila import logging as flog
from fila.settings import Settings

log = flog.get("controlplane")

FEEDBACK_STOP_TIMEOUT = 25.0
"""Feedback sends in flight get their grace; a stuck stop never holds the shutdown."""
HISTORY_PRUNE_SECONDS = 3600.0
"""How often each control plane drops history rows past FILA_CONFIG_HISTORY_DAYS."""


async def prune_history(settings: Settings) -> None:
    """At start, then hourly; a failed pass (PostgreSQL down) waits for the next one."""
    while True:
        try:
            gone = await prune(settings.config_history_days)
            if gone:
                log.info("configuration history pruned", rows=gone)
        except Exception as exc:
            log.warning("history prune failed", error=str(exc) or type(exc).__name__)
        await asyncio.sleep(HISTORY_PRUNE_SECONDS)


def provide_runtime(state: State) -> Runtime:
    rt: Runtime = state.rt
    return rt


def _handlers() -> list[Any]:
    return [
        HealthController,
        FilterController,
        QueueController,
        CleanupController,
        WebhookController,
        FleetController,
        IngestController,
        ConfigController,
        MetricsController,
        FeedbackController,
        DeadLetterController,
    ]


def body_limit(settings: Settings) -> int:
    """Largest request body: the largest audio (FILA_MAX_AUDIO_BYTES) as base64 plus 1 MiB for
    the Evolution event around it; bigger bodies are answered 413 before being read."""
    return (settings.max_audio_bytes + 2) // 3 * 4 + 1024 * 1024


async def before_request(request: Request[Any, Any, Any]) -> Response[None] | None:
    """OPTIONS answered with the path's every method; JSON bodies checked strictly."""
    answer = options_answer(request)
    if answer is not None:
        return answer
    await strict_body(request)
    return None


def create_app(settings: Settings) -> Litestar:
    """The app; connections open in its lifespan, so building it is cheap (OpenAPI, tests)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        rt = await open_runtime(settings)
        app.state.rt = rt
        feedback: FeedbackService | None = None
        pruner: asyncio.Task[None] | None = None
        scheduler = CleanupScheduler(rt)
        try:
            await mirror_config(rt)
            await scheduler.start()
            rt.cleanup_scheduler = scheduler
            pruner = asyncio.create_task(prune_history(settings))
            feedback = FeedbackService(settings, rt.redis)
            app.state.feedback = feedback
            await feedback.start()
            log.info("control plane ready", port=settings.http_port)
            yield
        finally:
            if feedback is not None:
                await bounded("feedback", feedback.stop, FEEDBACK_STOP_TIMEOUT)
            if pruner is not None:
                pruner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pruner
            await scheduler.stop()
            await rt.close()

    app = Litestar(
        route_handlers=_handlers(),
        lifespan=[lifespan],
        state=State({"settings": settings}),
        dependencies={"rt": Provide(provide_runtime, sync_to_thread=False)},
        guards=[require_apikey],
        before_request=before_request,
        request_max_body_size=body_limit(settings),
        exception_handlers=HANDLERS,
        openapi_config=OpenAPIConfig(
            title="Fila control plane",
            version="0.1.0",
            path="/schema",
            # Behind the same `apikey` rules as every route (the app's guard covers them); the
            # pages embed the document, so no second unauthenticated fetch is needed.
            render_plugins=[
                SwaggerRenderPlugin(path=["/", "/swagger"]),
                RedocRenderPlugin(path="/redoc"),
                JsonRenderPlugin(path="/openapi.json"),
            ],
        ),
    )
    refine(app, settings.evolution_routing_key)
    return app
