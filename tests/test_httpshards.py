"""Small connection pools behind one client, over real sockets to a real loopback server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from fila.configstore import ConfigStore
from fila.httpshards import SHARD_CONNECTIONS, ShardedTransport, sharded
from fila.keys import Keys
from fila.settings import Settings
from simulator.httpserver import LoopbackServer, Request, Response
from workers.addressguard import PublicOnlyBackend
from workers.webhook import Webhooks

BURST = 40


class HeldServer:
    """Answers nothing until `release` is set, so every request is in flight at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.arrived = 0
        self.all_arrived = asyncio.Event()
        self.server = LoopbackServer(self.handle)

    async def handle(self, request: Request) -> Response:
        self.arrived += 1
        if self.arrived == BURST:
            self.all_arrived.set()
        await self.release.wait()
        return Response(body=b"x" * 100_000, content_type="application/octet-stream")

    @property
    def url(self) -> str:
        return f"{self.server.url}/hook"


@pytest.fixture
async def held() -> AsyncIterator[HeldServer]:
    server = HeldServer()
    await server.server.start()
    yield server
    await server.server.stop()


async def test_a_burst_is_spread_over_small_pools_and_every_slot_comes_back(
    held: HeldServer,
) -> None:
    transport = sharded(httpx.Limits(max_connections=64))
    assert isinstance(transport, ShardedTransport)
    assert len(transport.shards) == 64 // SHARD_CONNECTIONS
    async with httpx.AsyncClient(transport=transport) as client:

        async def post(i: int) -> int:
            async with client.stream("POST", held.url, content=b"%d" % i) as response:
                async for _ in response.aiter_bytes():
                    break  # only the start, as delivery reads an answer
                return response.status_code

        posts = [asyncio.create_task(post(i)) for i in range(BURST)]
        await asyncio.wait_for(held.all_arrived.wait(), 10)
        # All 40 are in flight: no pool took more than its share.
        assert sum(transport.in_flight) == BURST
        assert max(transport.in_flight) - min(transport.in_flight) <= 1
        held.release.set()
        assert await asyncio.gather(*posts) == [200] * BURST
        assert transport.in_flight == [0] * len(transport.shards)
        for shard in transport.shards:
            assert isinstance(shard, httpx.AsyncHTTPTransport)
            assert len(shard._pool.connections) <= SHARD_CONNECTIONS


async def test_a_refused_connection_frees_its_slot() -> None:
    transport = sharded(httpx.Limits(max_connections=32))
    assert isinstance(transport, ShardedTransport)
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(10):
            with pytest.raises(httpx.ConnectError):
                await client.post(f"http://127.0.0.1:{port}/gone", content=b"x")
        assert transport.in_flight == [0] * len(transport.shards)


async def test_a_small_pool_and_a_proxy_environment_stay_as_httpx_builds_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small = sharded(httpx.Limits(max_connections=SHARD_CONNECTIONS))
    assert isinstance(small, httpx.AsyncHTTPTransport)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    assert sharded(httpx.Limits(max_connections=64)) is None


async def test_webhook_guard_is_kept_in_every_pool(settings: Settings, redis: Redis) -> None:
    guarded = settings.replace(webhook_block_private=True)
    hooks = Webhooks(guarded, ConfigStore(redis, Keys(guarded.redis_prefix), guarded))
    try:
        transport = hooks.http._transport
        assert isinstance(transport, ShardedTransport)
        for shard in transport.shards:
            assert isinstance(shard, httpx.AsyncHTTPTransport)
            assert isinstance(shard._pool._network_backend, PublicOnlyBackend)
        attempt = await hooks.post("http://127.0.0.1:9/hook", b"{}", "msg-1", {})
        assert attempt.status is None and attempt.blocked
        assert transport.in_flight == [0] * len(transport.shards)
    finally:
        await hooks.aclose()
