"""httpx's API on aiohttp's connections, over real sockets to real loopback servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from fila.configstore import ConfigStore
from fila.httptransport import Client, Transport, client, transport
from fila.keys import Keys
from fila.settings import Settings
from simulator.httpserver import LoopbackServer, Request, Response
from workers.webhook import Webhooks

BURST = 40
LIMIT = 8


class HeldServer:
    """Answers nothing until `release` is set; counts the requests that reached it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.arrived = 0
        self.limit_reached = asyncio.Event()
        self.bodies: list[bytes] = []
        self.server = LoopbackServer(self.handle)

    async def handle(self, request: Request) -> Response:
        self.arrived += 1
        if self.arrived == LIMIT:
            self.limit_reached.set()
        self.bodies.append(request.body)
        await self.release.wait()
        return Response(body=b"x" * 100_000, content_type="application/octet-stream")


@pytest.fixture
async def held() -> AsyncIterator[HeldServer]:
    server = HeldServer()
    await server.server.start()
    yield server
    await server.server.stop()


async def _closed_port() -> int:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port: int = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    return port


async def test_a_burst_waits_for_the_connection_limit_and_every_request_is_answered(
    held: HeldServer,
) -> None:
    limits = httpx.Limits(max_connections=LIMIT)
    async with httpx.AsyncClient(transport=transport(limits), timeout=30) as client:

        async def post(i: int) -> tuple[int, int]:
            response = await client.post(f"{held.server.url}/hook", content=b"%d" % i)
            return response.status_code, len(response.content)

        posts = [asyncio.create_task(post(i)) for i in range(BURST)]
        await asyncio.wait_for(held.limit_reached.wait(), 10)
        await asyncio.sleep(0.3)
        assert held.arrived == LIMIT  # the rest wait for a connection, none is refused
        held.release.set()
        assert await asyncio.gather(*posts) == [(200, 100_000)] * BURST
    assert sorted(held.bodies) == sorted(b"%d" % i for i in range(BURST))


async def test_a_refused_connection_is_a_connect_error_not_a_timeout() -> None:
    port = await _closed_port()
    async with httpx.AsyncClient(transport=transport(httpx.Limits(max_connections=4))) as client:
        with pytest.raises(httpx.ConnectError) as caught:
            await client.post(f"http://127.0.0.1:{port}/gone", content=b"x")
    assert not isinstance(caught.value, httpx.TimeoutException)


async def half_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Announces 1,000 bytes, sends nine and hangs up."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nonly this")
    await writer.drain()
    writer.close()


async def test_a_connection_dropped_mid_answer_is_an_httpx_error() -> None:
    server = await asyncio.start_server(half_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(transport=transport(httpx.Limits(max_connections=4))) as c:
            with pytest.raises(httpx.TransportError) as caught:
                await c.get(f"http://127.0.0.1:{port}/")
        assert not isinstance(caught.value, httpx.TimeoutException)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_proxy_environment_is_left_to_httpx_except_for_the_guarded_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits = httpx.Limits(max_connections=4)
    assert isinstance(transport(limits), Transport)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    assert transport(limits) is None
    guarded = transport(limits, public_only=True)
    assert isinstance(guarded, Transport) and guarded.public_only


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
async def test_the_webhook_guard_refuses_private_targets_before_connecting(
    settings: Settings, redis: Redis, held: HeldServer, host: str
) -> None:
    guarded = settings.replace(webhook_block_private=True)
    hooks = Webhooks(guarded, ConfigStore(redis, Keys(guarded.redis_prefix), guarded))
    try:
        url = f"http://{host}:{held.server.port}/hook"
        attempt = await hooks.post(url, b"{}", "msg-1", {})
        assert attempt.status is None
        assert attempt.blocked and "resolves to private address" in attempt.blocked
        assert held.arrived == 0
    finally:
        await hooks.aclose()

    open_hooks = Webhooks(settings, ConfigStore(redis, Keys(settings.redis_prefix), settings))
    held.release.set()
    try:
        attempt = await open_hooks.post(f"{held.server.url}/hook", b"{}", "msg-2", {})
        assert attempt.status == 200 and attempt.blocked is None
        assert held.arrived == 1
    finally:
        await open_hooks.aclose()


async def test_a_cookie_one_receiver_sets_never_rides_along_to_later_posts(
    settings: Settings, redis: Redis
) -> None:
    """Fila's clients keep no cookie jar: a receiver's `Set-Cookie` is not sent back, to it or
    to the next endpoint, and a jar cannot be handed to one."""
    seen: list[dict[str, str]] = []

    async def handle(request: Request) -> Response:
        seen.append(request.headers)
        return Response(body=b"{}", headers={"set-cookie": "session=abc123; Path=/"})

    server = LoopbackServer(handle)
    await server.start()
    hooks = Webhooks(settings, ConfigStore(redis, Keys(settings.redis_prefix), settings))
    binder = client(httpx.Limits(), httpx.Timeout(5.0))  # the instance binder's client
    try:
        for n in range(3):
            attempt = await hooks.post(f"{server.url}/hook", b"{}", f"msg-{n}", {})
            assert attempt.status == 200
            assert (await binder.get(f"{server.url}/instance/fetchInstances")).status_code == 200
        assert len(seen) == 6
        assert all("cookie" not in headers for headers in seen), seen
        assert "webhook-signature" in seen[-2]  # the same POSTs, signed as before
        assert not binder.cookies
        with pytest.raises(ValueError, match="keeps no cookies"):
            binder.cookies = {"session": "abc123"}
        with pytest.raises(ValueError, match="keeps no cookies"):
            Client(cookies={"session": "abc123"})
        with pytest.raises(ValueError, match="keeps no cookies"):
            binder.cookies.set("session", "abc123")
        with pytest.raises(ValueError, match="keeps no cookies"):
            binder.cookies["session"] = "abc123"
        with pytest.raises(ValueError, match="keeps no cookies"):
            binder.cookies.update({"session": "abc123"})
        assert not binder.cookies
    finally:
        await hooks.aclose()
        await binder.aclose()
        await server.stop()
