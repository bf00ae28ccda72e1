"""The requests every voice note makes (its media, its webhook), straight on aiohttp.

Through httpx, even on aiohttp's connections, a request cost twice aiohttp's own client CPU:
httpx's request and response models and the adapter between them were half of it
(docs/benchmarks.md). Failures still come out as httpx's exception types, so callers handle
them, and operators read them, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import httpx
import msgspec
import yarl

from fila.httptransport import BlockedAddress, PublicOnlyResolver, literal_refusal

CHUNK = 64 * 1024


@functools.lru_cache(maxsize=8192)
def _url(url: str) -> yarl.URL:
    """A target called again and again (a webhook, an instance's getBase64) parsed once."""
    return yarl.URL(url)


def _mapped(exc: BaseException) -> httpx.TransportError:
    """aiohttp's failure as the httpx error of the same meaning (most specific first)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    kind: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        kind = httpx.ConnectTimeout
    elif isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        kind = httpx.ProxyError
    elif isinstance(exc, aiohttp.ClientConnectorError):
        kind = httpx.ConnectError
    elif isinstance(exc, aiohttp.InvalidURL):
        kind = httpx.UnsupportedProtocol
    elif isinstance(exc, asyncio.TimeoutError):  # SocketTimeoutError and the other reads
        kind = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientConnectionError):
        kind = httpx.ReadError
    else:
        kind = httpx.TransportError
    return kind(text)


class Answer:
    """A response whose body is read as it arrives, at most as far as the caller wants."""

    __slots__ = ("_inner",)

    def __init__(self, inner: aiohttp.ClientResponse) -> None:
        self._inner = inner

    @property
    def status_code(self) -> int:
        return self._inner.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._inner.headers

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner.content.iter_chunked(CHUNK):
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _mapped(exc) from exc


class Calls:
    """One connection pool per process; no cookies kept, no redirects followed, and, when
    guarded, no private address reached (checked where the socket connects)."""

    def __init__(
        self, limits: httpx.Limits, timeout: httpx.Timeout, *, public_only: bool = False
    ) -> None:
        self.public_only = public_only
        self._limits = limits
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout.pool, sock_connect=timeout.connect, sock_read=timeout.read
        )
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limits.max_connections or 0,
            keepalive_timeout=self._limits.keepalive_expiry,
            resolver=PublicOnlyResolver() if self.public_only else None,
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            # A proxy the environment names is honoured, except by a guarded client: through
            # a proxy the guard would judge the proxy's address, not the target's.
            trust_env=not self.public_only and bool(urllib.request.getproxies()),
            timeout=self._timeout,
        )

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        once: bool = False,
    ) -> AsyncIterator[Answer]:
        """The answer's status and headers; its body only as far as it is iterated. A URL
        used `once` (a media download's) stays out of the cache of repeated targets."""
        target = yarl.URL(url) if once else _url(url)
        if self.public_only and (refusal := literal_refusal(target.host or "")):
            raise httpx.ConnectError(refusal) from BlockedAddress(refusal)
        if json is not None:
            content = msgspec.json.encode(json)
            headers = {"content-type": "application/json", **(headers or {})}
        if self._session is None:
            self._session = self._open()
        try:
            response = await self._session.request(
                method, target, data=content, headers=headers, allow_redirects=False
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _mapped(exc) from exc
        try:
            yield Answer(response)
        finally:
            response.release()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Calls:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
