"""A resolver that refuses private targets at connect time, not only when saved.

A webhook host checked when its URL was saved can resolve elsewhere later (DNS change or
rebinding); checking the very addresses the socket will connect to closes that gap. An IP
literal never reaches a resolver, so `literal_refusal` checks those before the request.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from fila.addresses import is_private


class BlockedAddress(OSError):
    """The host resolved to an address the settings forbid; retrying will not help."""


class PublicOnlyResolver(AbstractResolver):
    """Resolves the host, and refuses it if any of its addresses is private."""

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


def literal_refusal(host: str | None) -> str | None:
    """Why a URL whose host is a private IP literal is refused (None for names, public IPs)."""
    if not host:
        return None
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    address = host.strip("[]")
    return f"{address} resolves to private address {address}" if is_private(address) else None


def blocked_reason(exc: BaseException) -> str | None:
    """The refusal behind an HTTP client error, if the guard made it."""
    cause: Any = exc
    while cause is not None:
        if isinstance(cause, BlockedAddress):
            return str(cause)
        inner = getattr(cause, "os_error", None)  # aiohttp's ClientConnectorError
        if isinstance(inner, BlockedAddress):
            return str(inner)
        cause = cause.__cause__ or cause.__context__
    return None
