"""Async client of the control plane: every route the TUI uses, plus the live fleet stream.

Each response is decoded with the Struct that the control plane encodes (one definition for
both ends). Failures become two errors the screens can show: the server refused
(`ControlPlaneError`, with its message) or could not be reached (`Unreachable`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from fila.audiofilter import AudioFilter, EmergencyFilter
from fila.deadletters import DeadLetter, ReplayResult
from fila.fleetquery import InstancesQuery
from fila.history import ConfigHistory
from fila.models import RateLimitConfig, WorkerInfo
from fila.settings import Settings
from fila.views import FleetOverview, InstancesView, WeightRecord
from tui.contract import (
    CleanupResult,
    CleanupSchedule,
    CleanupStatus,
    ControlAck,
    FilterRecord,
    ProcessStatus,
    SessionCancelled,
    Updated,
    WebhookConfigResponse,
    WebhookTestResponse,
)

T = TypeVar("T")
Role = Literal["ingest", "delivery"]
DeadQueue = Literal["delivery", "ingest", "monitoring"]


class ControlPlaneError(Exception):
    """The control plane answered with an error; `str()` is its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Unreachable(Exception):
    """The control plane did not answer (down, refused, timed out)."""


class Disconnected(msgspec.Struct, kw_only=True):
    """Yielded by the fleet stream while it cannot reach the control plane."""

    reason: str
    retryIn: float


class _Workers(msgspec.Struct, kw_only=True):
    workers: list[WorkerInfo]


class _DeadLetters(msgspec.Struct, kw_only=True):
    deadLetters: list[DeadLetter]
    count: int = 0


def _message(response: httpx.Response) -> str:
    """The server's own words: Litestar's `detail`, the contract's `message`, or the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict):
        for field in ("detail", "message", "error"):
            value = body.get(field)
            if isinstance(value, str) and value:
                return value
    return response.text.strip()


CLEANUP_WAIT = 3600.0
"""Seconds the TUI waits for a cleanup run it started (its progress shows meanwhile)."""
WEBHOOK_TEST_WAIT = 15.0
"""The control plane gives a webhook test 10 s; this leaves room for its answer."""


def _seg(value: str) -> str:
    """One path segment: an instance or session name with '/', '#' or '?' stays one segment."""
    return quote(value, safe="")


class FilaClient:
    """One httpx connection pool to the control plane (`apikey` header on every call)."""

    BACKOFF = (0.5, 1.0, 2.0, 4.0, 5.0)

    def __init__(self, settings: Settings, *, timeout: float = 10.0) -> None:
        self.base_url = settings.server_url.rstrip("/")
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"apikey": settings.api_key},
            timeout=httpx.Timeout(timeout, connect=3.0),
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        kind: type[T],
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> T:
        """`timeout` (read) for calls that are slow by design; the client's default otherwise."""
        content = msgspec.json.encode(body) if body is not None else None
        headers = {"content-type": "application/json"} if content is not None else None
        try:
            response = await self.http.request(
                method,
                path,
                content=content,
                headers=headers,
                params={k: v for k, v in (params or {}).items() if v not in (None, "")},
                timeout=httpx.Timeout(timeout, connect=3.0)
                if timeout
                else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise Unreachable(
                f"unreachable ({type(exc).__name__} {exc}".strip() + f") at {self.base_url}"
            ) from exc
        if response.status_code >= 400:
            raise ControlPlaneError(response.status_code, _message(response))
        try:
            return msgspec.json.decode(response.content, type=kind, strict=False)
        except msgspec.DecodeError as exc:
            raise ControlPlaneError(response.status_code, f"{path}: bad response: {exc}") from exc

    # ------------------------------------------------------------ fleet

    async def instances(self, query: InstancesQuery | None = None) -> InstancesView:
        """A page of the fleet table, sorted and filtered by the control plane."""
        q = query or InstancesQuery()
        params = {"sort": q.sort, "order": q.order, "q": q.q, "offset": str(q.offset)}
        if q.limit is not None:
            params["limit"] = str(q.limit)
        return await self._call("GET", "/fleet/instances", InstancesView, params=params)

    async def overview(self) -> FleetOverview:
        return await self._call("GET", "/fleet/overview", FleetOverview)

    async def workers(self) -> list[WorkerInfo]:
        return (await self._call("GET", "/workers", _Workers)).workers

    async def control(self, action: Literal["pause", "resume", "drain"], role: Role | None) -> int:
        """Pause, resume or drain the workers (one role or all); returns the control seq."""
        body = {"role": role} if role else {}
        return (await self._call("POST", f"/queue/{action}", ControlAck, body=body)).seq

    # ------------------------------------------------------------ filters and limits

    async def audio_filter(self, instance: str) -> AudioFilter:
        return await self._call("GET", f"/instance/{_seg(instance)}/filters/audio", AudioFilter)

    async def set_audio_filter(self, instance: str, rule: AudioFilter) -> FilterRecord:
        return await self._call(
            "PUT", f"/instance/{_seg(instance)}/filters/audio", FilterRecord, body=rule
        )

    async def set_audio_filters(self, instances: list[str] | None, rule: AudioFilter) -> int:
        """Same rule on many instances (None: every known instance); returns how many."""
        body = {"instances": instances, **msgspec.to_builtins(rule)}
        return (await self._call("PUT", "/filters/audio/bulk", Updated, body=body)).updated

    async def ratelimit(self) -> RateLimitConfig:
        return await self._call("GET", "/ratelimit", RateLimitConfig)

    async def set_ratelimit(self, changes: Mapping[str, Any]) -> RateLimitConfig:
        return await self._call("PUT", "/ratelimit", RateLimitConfig, body=dict(changes))

    async def set_weight(self, instance: str, weight: int) -> WeightRecord:
        path = f"/instance/{_seg(instance)}/weight"
        return await self._call("PUT", path, WeightRecord, body={"weight": weight})

    async def emergency(self) -> EmergencyFilter:
        return await self._call("GET", "/filters/emergency", EmergencyFilter)

    async def set_emergency(self, rule: EmergencyFilter) -> EmergencyFilter:
        return await self._call("PUT", "/filters/emergency", EmergencyFilter, body=rule)

    # ------------------------------------------------------------ feedback sessions

    async def process_status(self) -> ProcessStatus:
        return await self._call("GET", "/process/status", ProcessStatus)

    async def cancel_session(self, session_id: str) -> SessionCancelled:
        return await self._call("DELETE", f"/process/{_seg(session_id)}", SessionCancelled)

    # ------------------------------------------------------------ cleanup

    async def cleanup_schedule(self) -> CleanupSchedule:
        return await self._call("GET", "/cleanup/schedule", CleanupSchedule)

    async def set_cleanup_schedule(self, changes: Mapping[str, Any]) -> CleanupSchedule:
        return await self._call("PUT", "/cleanup/schedule", CleanupSchedule, body=dict(changes))

    async def cleanup_status(self) -> CleanupStatus:
        return await self._call("GET", "/cleanup/status", CleanupStatus)

    async def run_cleanup(self) -> CleanupResult:
        # The contract's execute answers when the run is over: minutes on a large bucket.
        return await self._call("POST", "/cleanup/execute", CleanupResult, timeout=CLEANUP_WAIT)

    # ------------------------------------------------------------ webhooks

    async def webhook_config(self) -> WebhookConfigResponse:
        return await self._call("GET", "/webhook/global/config", WebhookConfigResponse)

    async def set_webhook_config(self, changes: Mapping[str, Any]) -> WebhookConfigResponse:
        return await self._call(
            "PUT", "/webhook/global/config", WebhookConfigResponse, body=dict(changes)
        )

    async def test_webhook(
        self, url: str, kind: Literal["principal", "monitoramento"]
    ) -> WebhookTestResponse:
        body = {"url": url, "type": kind}
        return await self._call(
            "POST",
            "/webhook/global/test",
            WebhookTestResponse,
            body=body,
            timeout=WEBHOOK_TEST_WAIT,
        )

    # ------------------------------------------------------------ configuration history

    async def config_history(
        self, target: str | None = None, since: str | None = None, limit: int = 200
    ) -> ConfigHistory:
        """Changes newest first; `instance:<name>` also lists bulk changes and imports."""
        params = {"target": target, "since": since, "limit": limit}
        return await self._call("GET", "/config/history", ConfigHistory, params=params)

    # ------------------------------------------------------------ dead letters

    async def dead_letters(
        self,
        queue: DeadQueue,
        *,
        instance: str | None = None,
        reason: str | None = None,
        limit: int = 200,
    ) -> list[DeadLetter]:
        params = {"queue": queue, "instance": instance, "reason": reason, "limit": limit}
        found = await self._call("GET", "/queue/dead-letters", _DeadLetters, params=params)
        return found.deadLetters

    async def replay(
        self,
        queue: DeadQueue,
        *,
        instance: str | None = None,
        reason: str | None = None,
        limit: int | None = None,
    ) -> ReplayResult:
        body = {"queue": queue, "instance": instance, "reason": reason, "limit": limit}
        body = {k: v for k, v in body.items() if v is not None}
        return await self._call("POST", "/queue/dead-letters/replay", ReplayResult, body=body)

    # ------------------------------------------------------------ live stream

    async def stream(self) -> AsyncIterator[FleetOverview | Disconnected]:
        """`/fleet/stream` forever: overviews as they come, `Disconnected` while reconnecting."""
        failures = 0
        while True:
            try:
                async for overview in self._stream_once():
                    failures = 0
                    yield overview
                reason = "stream ended"
            except httpx.HTTPError as exc:
                reason = f"unreachable ({type(exc).__name__} {exc}".strip() + ")"
            except ControlPlaneError as exc:
                reason = f"HTTP {exc.status}: {exc}"
            except msgspec.DecodeError as exc:
                reason = f"unreadable fleet event: {exc}"
            delay = self.BACKOFF[min(failures, len(self.BACKOFF) - 1)]
            failures += 1
            yield Disconnected(reason=f"{reason} at {self.base_url}", retryIn=delay)
            await asyncio.sleep(delay)

    async def _stream_once(self) -> AsyncIterator[FleetOverview]:
        timeout = httpx.Timeout(10.0, connect=3.0, read=15.0)
        async with self.http.stream("GET", "/fleet/stream", timeout=timeout) as response:
            if response.status_code >= 400:
                await response.aread()
                raise ControlPlaneError(response.status_code, _message(response))
            data: list[str] = []
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif not line and data:
                    payload, data = "\n".join(data), []
                    yield msgspec.json.decode(payload, type=FleetOverview, strict=False)
