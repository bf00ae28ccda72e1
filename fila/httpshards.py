"""Several small connection pools behind one httpx client.

httpcore's pool polls the socket of every idle connection on each request and each response
close, so one pool of 32+ busy connections spends more CPU on that scan than on the request
(docs/benchmarks.md). Each request goes to the pool with the fewest in flight.
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import AsyncIterator, Callable

import httpx

SHARD_CONNECTIONS = 8
"""Connections per pool: past about this many the scan grows faster than the work."""

MakeTransport = Callable[[httpx.Limits], httpx.AsyncBaseTransport]


def _plain(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    return httpx.AsyncHTTPTransport(limits=limits)


def sharded(limits: httpx.Limits, make: MakeTransport = _plain) -> httpx.AsyncBaseTransport | None:
    """A transport spreading `limits` over pools of SHARD_CONNECTIONS; None keeps httpx's own.

    None too, for the plain transport, when the environment names a proxy: httpx only honours
    those when given no transport.
    """
    total = limits.max_connections
    if make is _plain and urllib.request.getproxies():
        return None
    if total is None or total <= SHARD_CONNECTIONS:
        return make(limits)
    count = math.ceil(total / SHARD_CONNECTIONS)
    keepalive = limits.max_keepalive_connections
    each = httpx.Limits(
        max_connections=math.ceil(total / count),
        max_keepalive_connections=None if keepalive is None else math.ceil(keepalive / count),
        keepalive_expiry=limits.keepalive_expiry,
    )
    return ShardedTransport([make(each) for _ in range(count)])


class ShardedTransport(httpx.AsyncBaseTransport):
    """Least-in-flight choice among pools; a request counts until its response is closed."""

    def __init__(self, shards: list[httpx.AsyncBaseTransport]) -> None:
        self.shards = shards
        self.in_flight = [0] * len(shards)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        loads = self.in_flight
        index = loads.index(min(loads))
        loads[index] += 1
        try:
            response = await self.shards[index].handle_async_request(request)
        except BaseException:
            loads[index] -= 1
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Counted(response.stream, loads, index)
        return response

    async def aclose(self) -> None:
        for shard in self.shards:
            await shard.aclose()


class _Counted(httpx.AsyncByteStream):
    """The shard's response body; closing it (once) frees the shard's slot."""

    def __init__(self, inner: httpx.AsyncByteStream, loads: list[int], index: int) -> None:
        self._inner = inner
        self._loads = loads
        self._index: int | None = index

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        if self._index is not None:
            self._loads[self._index] -= 1
            self._index = None
        await self._inner.aclose()
