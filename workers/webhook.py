"""POSTing signed bodies to the configured webhooks, with the configuration cached per process.

The cache lasts `filter_cache_ttl_seconds` like the filter cache: a missed announcement only
delays a webhook change, it never leaves a worker on the old target for good.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import msgspec

from fila.configstore import ConfigStore
from fila.httpcalls import Answer, Calls
from fila.httptransport import blocked_reason
from fila.models import WebhookConfig, WebhookTarget
from fila.settings import Settings
from fila.signing import Signer

RESPONSE_SNIPPET = 500


class Attempt(msgspec.Struct, kw_only=True):
    """The outcome of one POST: a status, or None for a connection error or timeout."""

    status: int | None
    response: str | None
    retry_after: str | None = None
    seconds: float = 0.0
    blocked: str | None = None
    """Set when the target resolved to an address the settings forbid (no retry helps)."""


def event_url(target: WebhookTarget, by_events: bool, event: str) -> str | None:
    """The target's URL, with the event appended as Evolution API does; None when off."""
    if not target.enabled or not target.url:
        return None
    if not by_events:
        return target.url
    return f"{target.url.rstrip('/')}/{event.replace('.', '-').replace('_', '-').lower()}"


class Webhooks:
    """One HTTP client per process, the webhook config re-read on a TTL or when invalidated."""

    def __init__(
        self,
        settings: Settings,
        store: ConfigStore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._ttl = settings.filter_cache_ttl_seconds
        self._clock = clock
        self.signer = Signer(settings.webhook_secret)
        limits = httpx.Limits(max_connections=max(settings.delivery_concurrency * 2, 20))
        self.http = Calls(
            limits,
            httpx.Timeout(settings.webhook_timeout_seconds),
            public_only=settings.webhook_block_private,
        )
        self._config: tuple[float, WebhookConfig] | None = None
        self._generation = 0
        self._deadline = settings.webhook_timeout_seconds * 2
        """The whole POST, however slowly the receiver trickles its answer."""

    async def config(self) -> WebhookConfig:
        if self._config is not None and self._clock() - self._config[0] < self._ttl:
            return self._config[1]
        generation = self._generation
        value = await self.store.webhook()
        if generation == self._generation:  # a read older than an announcement is not kept
            self._config = (self._clock(), value)
        return value

    def invalidate(self) -> None:
        self._generation += 1
        self._config = None

    async def post(
        self, url: str, body: bytes, message_id: str, headers: dict[str, str]
    ) -> Attempt:
        sent = {
            **headers,
            "content-type": "application/json",
            **self.signer.headers(message_id, body),
        }
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._deadline):
                async with self.http.stream("POST", url, content=body, headers=sent) as response:
                    # Only the start of the answer is kept: a huge one is cut off, not buffered.
                    head = await _head(response, RESPONSE_SNIPPET * 4)
        except httpx.HTTPError as exc:
            return Attempt(
                status=None,
                response=f"{type(exc).__name__}: {exc}"[:RESPONSE_SNIPPET],
                seconds=time.perf_counter() - started,
                blocked=blocked_reason(exc),
            )
        except TimeoutError:
            return Attempt(
                status=None,
                response=f"no complete answer within {self._deadline:g} s",
                seconds=time.perf_counter() - started,
            )
        return Attempt(
            status=response.status_code,
            response=head.decode("utf-8", "replace")[:RESPONSE_SNIPPET],
            retry_after=response.headers.get("retry-after"),
            seconds=time.perf_counter() - started,
        )

    async def aclose(self) -> None:
        await self.http.aclose()


async def _head(response: Answer, limit: int) -> bytes:
    """Up to `limit` bytes of the body; the rest is never read."""
    head = b""
    async for chunk in response.aiter_bytes():
        head += chunk
        if len(head) >= limit:
            break
    return head[:limit]
