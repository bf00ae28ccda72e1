"""An HTTP transport that refuses private targets at connect time, not only when saved.

A webhook host checked when its URL was saved can resolve elsewhere later (DNS change or
rebinding); checking the very address the socket connects to closes that gap.
"""

from __future__ import annotations

import asyncio
import socket
import typing

import httpcore
import httpx

from fila.addresses import is_private


class BlockedAddress(httpcore.ConnectError):
    """The host resolved to an address the settings forbid; retrying will not help."""


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, refuses if any address is private, then connects by address."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise httpcore.ConnectError(f"{host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        blocked = [a for a in addresses if is_private(a)]
        if blocked:
            raise BlockedAddress(f"{host} resolves to private address {blocked[0]}")
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last or httpcore.ConnectError(f"{host}: no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddress("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def public_only_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's own transport with its connection pool built on `PublicOnlyBackend`."""
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    # httpx takes no network backend argument; its pool is rebuilt with the same limits.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=PublicOnlyBackend(),
    )
    return transport


def blocked_reason(exc: BaseException) -> str | None:
    """The refusal behind an httpx error, if the guard made it."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, BlockedAddress):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    return None
