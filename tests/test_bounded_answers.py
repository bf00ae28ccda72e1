"""A peer's answer cannot hold a worker's slot or memory: webhook receivers and Evolution API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis

from controlplane.feedback.evolution import EvolutionClient, EvolutionError
from fila.configstore import ConfigStore
from fila.events import audio_of
from fila.httpcalls import Calls
from fila.keys import Keys
from fila.models import EvolutionEvent
from fila.settings import Settings
from tests.test_ingest_support import audio_event
from workers.ingesterrors import IngestError
from workers.media import MediaFetcher
from workers.webhook import RESPONSE_SNIPPET, Webhooks

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]
Start = Callable[[Answer], Awaitable[str]]


@pytest.fixture
async def server() -> AsyncIterator[Start]:
    """A raw HTTP server that reads each request, then answers it with `answer`."""
    servers: list[asyncio.Server] = []

    async def start(answer: Answer) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length")
            )
            await reader.readexactly(length)
            try:
                await answer(writer)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(srv)
        port = srv.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    yield start
    for srv in servers:
        srv.close()


async def _huge(writer: asyncio.StreamWriter, sent: list[int], body: bytes = b"") -> None:
    """512 MiB announced and streamed until the client goes away; `sent` counts what went out."""
    size = 512 * 1024 * 1024
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + body)
    chunk = b"x" * 65536
    while sent[0] < size:
        writer.write(chunk)
        await writer.drain()
        sent[0] += len(chunk)


async def test_a_huge_getbase64_answer_is_refused_while_it_streams(
    settings: Settings, server: Start
) -> None:
    sent = [0]
    url = await server(lambda writer: _huge(writer, sent, b'{"base64": "'))
    small = settings.replace(evolution_url=url.removesuffix("/hook"), max_audio_bytes=100_000)
    event = msgspec.json.decode(
        msgspec.json.encode(audio_event("big", "B1", 10)), type=EvolutionEvent
    )
    audio = audio_of(event)
    assert audio is not None
    async with Calls(httpx.Limits(), httpx.Timeout(30.0)) as http:
        with pytest.raises(IngestError) as refused:
            await MediaFetcher(small, http).fetch(event, audio)
    assert refused.value.reason == "oversized"
    assert "getBase64 answer exceeds" in str(refused.value)
    await asyncio.sleep(0.2)
    assert sent[0] < 64 * 1024 * 1024, sent  # dropped at the limit, not read to the end


async def test_a_huge_answer_is_cut_to_its_start(
    settings: Settings,
    redis: aioredis.Redis,
    keys: Keys,
    server: Start,
) -> None:
    sent = [0]
    url = await server(lambda writer: _huge(writer, sent))
    hooks = Webhooks(settings, ConfigStore(redis, keys, settings))
    try:
        attempt = await asyncio.wait_for(hooks.post(url, b"{}", "m1", {}), timeout=60)
    finally:
        await hooks.aclose()
    assert attempt.status == 200
    assert attempt.response == "x" * RESPONSE_SNIPPET
    await asyncio.sleep(0.2)
    assert sent[0] < 64 * 1024 * 1024, sent  # the connection was dropped, not drained


async def test_a_trickling_answer_ends_at_the_deadline(
    settings: Settings,
    redis: aioredis.Redis,
    keys: Keys,
    server: Start,
) -> None:
    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(100000):  # one byte every 0.2 s: each read is well inside the timeout
            writer.write(b".")
            await writer.drain()
            await asyncio.sleep(0.2)

    url = await server(trickle)
    quick = settings.replace(webhook_timeout_seconds=1.0)
    hooks = Webhooks(quick, ConfigStore(redis, keys, quick))
    try:
        attempt = await asyncio.wait_for(hooks.post(url, b"{}", "m2", {}), timeout=60)
    finally:
        await hooks.aclose()
    assert attempt.status is None
    assert attempt.response == "no complete answer within 2 s"


async def test_a_trickling_evolution_api_ends_a_feedback_call_within_its_budget(
    settings: Settings, server: Start
) -> None:
    """httpx's timeout is per read: one byte every 0.2 s never trips it; the attempt's does."""

    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(100000):
            writer.write(b".")
            await writer.drain()
            await asyncio.sleep(0.2)

    url = await server(trickle)
    client = EvolutionClient(settings.replace(evolution_url=url.removesuffix("/hook")))
    try:
        with pytest.raises(EvolutionError, match="no answer within 1 s"):
            await asyncio.wait_for(
                client.send_reaction("inst", "5511@s.whatsapp.net", "M1", "🔄", budget=1.0),
                timeout=60,
            )
    finally:
        await client.aclose()
