"""Base of the simulator's HTTP peers: one loopback server, its address, `async with` lifetime."""

from __future__ import annotations

from typing import Any, Self

from simulator.httpserver import Handler, LoopbackServer


class Served:
    """`async with peer:` listens on 127.0.0.1 until the block ends."""

    def __init__(self, handler: Handler, port: int = 0) -> None:
        self._server = LoopbackServer(handler, port=port)

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    async def __aenter__(self) -> Self:
        await self._server.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._server.stop()
