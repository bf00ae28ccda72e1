"""The workers' media and webhook client, over real sockets to real loopback servers."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from fila import httpcalls
from fila.httpcalls import Calls
from fila.httptransport import blocked_reason
from simulator.httpserver import LoopbackServer, Request, Response
from tests import test_httptransport
from tests.test_httptransport import BURST, LIMIT, HeldServer, _closed_port, half_answer

held = test_httptransport.held
"""The same held server as the transport's tests (a fixture of that module)."""


async def _post(calls: Calls, url: str, body: bytes) -> tuple[int, bytes]:
    async with calls.stream("POST", url, content=body) as answer:
        return answer.status_code, b"".join([c async for c in answer.aiter_bytes()])


async def test_a_burst_waits_for_the_connection_limit_and_every_request_is_answered(
    held: HeldServer,
) -> None:
    async with Calls(httpx.Limits(max_connections=LIMIT), httpx.Timeout(30.0)) as calls:
        url = f"{held.server.url}/hook"
        posts = [asyncio.create_task(_post(calls, url, b"%d" % i)) for i in range(BURST)]
        await asyncio.wait_for(held.limit_reached.wait(), 10)
        await asyncio.sleep(0.3)
        assert held.arrived == LIMIT  # the rest wait for a connection, none is refused
        held.release.set()
        answers = await asyncio.gather(*posts)
    assert [(status, len(body)) for status, body in answers] == [(200, 100_000)] * BURST
    assert sorted(held.bodies) == sorted(b"%d" % i for i in range(BURST))


async def test_a_refused_connection_is_a_connect_error_not_a_timeout() -> None:
    port = await _closed_port()
    async with Calls(httpx.Limits(max_connections=4), httpx.Timeout(5.0)) as calls:
        with pytest.raises(httpx.ConnectError) as caught:
            await _post(calls, f"http://127.0.0.1:{port}/gone", b"x")
    assert not isinstance(caught.value, httpx.TimeoutException)
    assert "ClientConnectorError" in str(caught.value)


async def test_a_connection_dropped_mid_answer_is_a_read_error() -> None:
    server = await asyncio.start_server(half_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Calls(httpx.Limits(max_connections=4), httpx.Timeout(5.0)) as calls:
            with pytest.raises(httpx.ReadError):
                async with calls.stream("GET", f"http://127.0.0.1:{port}/") as answer:
                    assert answer.status_code == 200
                    async for _ in answer.aiter_bytes():
                        pass
    finally:
        server.close()
        await server.wait_closed()


async def test_a_silent_server_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(30)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Calls(httpx.Limits(), httpx.Timeout(0.5)) as calls:
            with pytest.raises(httpx.ReadTimeout):
                await _post(calls, f"http://127.0.0.1:{port}/", b"x")
    finally:
        server.close()
        await server.wait_closed()


async def test_json_is_sent_as_json_and_headers_are_read_in_any_case() -> None:
    seen: list[Request] = []

    async def handle(request: Request) -> Response:
        seen.append(request)
        return Response(body=b"{}", headers={"Retry-After": "7"})

    server = LoopbackServer(handle)
    await server.start()
    try:
        async with Calls(httpx.Limits(), httpx.Timeout(5.0)) as calls:
            body = {"message": {"key": {"id": "ABC"}}}
            async with calls.stream("POST", f"{server.url}/x", json=body, headers={"a": "b"}) as r:
                assert r.status_code == 200 and r.headers.get("retry-after") == "7"
    finally:
        await server.stop()
    assert json.loads(seen[0].body) == {"message": {"key": {"id": "ABC"}}}
    assert seen[0].headers["content-type"] == "application/json"
    assert seen[0].headers["a"] == "b"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
async def test_the_guard_refuses_private_targets_before_connecting(
    held: HeldServer, host: str
) -> None:
    async with Calls(httpx.Limits(), httpx.Timeout(5.0), public_only=True) as calls:
        with pytest.raises(httpx.ConnectError) as caught:
            await _post(calls, f"http://{host}:{held.server.port}/hook", b"{}")
    reason = blocked_reason(caught.value)
    assert reason and "resolves to private address" in reason
    assert held.arrived == 0


async def test_a_proxy_environment_is_honoured_except_by_the_guarded_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits, timeout = httpx.Limits(), httpx.Timeout(5.0)
    plain = Calls(limits, timeout)._open()
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    proxied = Calls(limits, timeout)._open()
    guarded = Calls(limits, timeout, public_only=True)._open()
    try:
        assert not plain.trust_env and proxied.trust_env and not guarded.trust_env
    finally:
        for session in (plain, proxied, guarded):
            await session.close()


def test_a_target_called_again_is_parsed_once() -> None:
    url = "http://127.0.0.1:9/chat/getBase64FromMediaMessage/inst%20one"
    assert httpcalls._url(url) is httpcalls._url(url)
    assert str(httpcalls._url(url)) == url


async def test_a_url_used_once_stays_out_of_the_cache() -> None:
    """Every media download has a URL of its own: cached, they would push the webhook's out."""

    async def handle(request: Request) -> Response:
        return Response(body=b"audio")

    server = LoopbackServer(handle)
    await server.start()
    try:
        async with Calls(httpx.Limits(), httpx.Timeout(5.0)) as calls:
            before = httpcalls._url.cache_info().currsize
            for n in range(5):
                url = f"{server.url}/v/t62/{n}.enc"
                async with calls.stream("GET", url, once=True) as answer:
                    assert b"".join([c async for c in answer.aiter_bytes()]) == b"audio"
            assert httpcalls._url.cache_info().currsize == before
            async with calls.stream("POST", f"{server.url}/hook", content=b"{}") as answer:
                assert answer.status_code == 200
            assert httpcalls._url.cache_info().currsize == before + 1
    finally:
        await server.stop()
