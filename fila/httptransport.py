"""httpx's API over aiohttp's connections, for the two requests every voice note makes.

httpcore spends more CPU per request than the request itself once a pool is busy (it polls
every idle connection on each request and each close; docs/benchmarks.md); aiohttp, already
installed with aiobotocore, does not. The code keeps speaking httpx; only the wire changes.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from httpx_aiohttp import AiohttpTransport

from fila.addresses import is_private


class BlockedAddress(OSError):
    """The host resolved to an address the settings forbid; retrying will not help."""


class PublicOnlyResolver(AbstractResolver):
    """Resolves the host and refuses it if any of its addresses is private: checked where the
    socket connects, so a name that resolves elsewhere after it was saved is still caught."""

    def __init__(self) -> None:
        self.inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        blocked = [r["host"] for r in found if is_private(r["host"])]
        if blocked:
            raise BlockedAddress(f"{host} resolves to private address {blocked[0]}")
        return found

    async def close(self) -> None:
        await self.inner.close()


def literal_refusal(host: str) -> str | None:
    """Why a private IP literal is refused (None for names and public IPs): aiohttp connects
    to a literal without asking the resolver."""
    address = host.strip("[]").split("%", 1)[0]
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return None
    return f"{address} resolves to private address {address}" if is_private(address) else None


class Transport(AiohttpTransport):
    """httpx-aiohttp's transport, with every aiohttp error raised as an httpx one and, when
    guarded, private targets refused before a socket opens."""

    def __init__(self, limits: httpx.Limits, *, public_only: bool) -> None:
        super().__init__(limits=limits, trust_env=False, client=self._session)
        self.public_only = public_only

    def _session(self) -> aiohttp.ClientSession:
        limits = self.limits
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0,
            keepalive_timeout=limits.keepalive_expiry,
            ssl=self.ssl_context,
            resolver=PublicOnlyResolver() if self.public_only else None,
        )
        return aiohttp.ClientSession(connector=connector, trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.public_only and (refusal := literal_refusal(request.url.host)):
            raise httpx.ConnectError(refusal, request=request) from BlockedAddress(refusal)
        try:
            response = await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            # The library files every connection failure as a timeout; a refusal or a dropped
            # connection is not one, and the error's name is what an operator reads.
            cause = exc.__cause__
            if cause is None or isinstance(cause, TimeoutError):
                raise
            kind = (
                httpx.ConnectError
                if isinstance(cause, aiohttp.ClientConnectorError)
                else httpx.ReadError
            )
            raise kind(str(exc), request=request) from cause
        except aiohttp.ClientError as exc:
            raise httpx.TransportError(f"{type(exc).__name__}: {exc}") from exc
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Body(response.stream)
        return response


class _Body(httpx.AsyncByteStream):
    """The response body, with aiohttp errors the library leaves unmapped raised as httpx's."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from exc


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing a response sets and refuses what a caller would put in it."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        raise ValueError("this client keeps no cookies")

    def update(self, cookies: Any = None) -> None:  # type: ignore[override]
        if cookies:
            raise ValueError("this client keeps no cookies")


class Client(httpx.AsyncClient):
    """httpx's client without a cookie jar. Fila calls APIs and webhooks, so a cookie one
    receiver sets must not ride along to later calls; reading every answer's `Set-Cookie` into
    a jar was also about a sixth of a request's client CPU (docs/benchmarks.md)."""

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("cookies"):
            raise ValueError("this client keeps no cookies")
        super().__init__(**kwargs)
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        if cookies:
            raise ValueError("this client keeps no cookies")


def client(
    limits: httpx.Limits,
    timeout: httpx.Timeout,
    *,
    public_only: bool = False,
    follow_redirects: bool = False,
) -> Client:
    """A worker's client for the requests every voice note makes."""
    return Client(
        timeout=timeout,
        limits=limits,
        follow_redirects=follow_redirects,
        transport=transport(limits, public_only=public_only),
    )


def transport(
    limits: httpx.Limits, *, public_only: bool = False
) -> httpx.AsyncBaseTransport | None:
    """The transport for a client with `limits`; None (httpx's own) when the environment names
    a proxy for an unguarded client, since httpx honours those only when given no transport."""
    if not public_only and urllib.request.getproxies():
        return None
    return Transport(limits, public_only=public_only)


def blocked_reason(exc: BaseException) -> str | None:
    """The guard's refusal behind an httpx error, if it made one."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, BlockedAddress):
            return str(cause)
        inner = getattr(cause, "os_error", None)  # aiohttp's ClientConnectorError
        if isinstance(inner, BlockedAddress):
            return str(inner)
        cause = cause.__cause__ or cause.__context__
    return None
