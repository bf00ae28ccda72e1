"""HTTP ingest holds a bounded number of body bytes at once: the next waits, then gets 429."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from fila.settings import Settings
from tests.support import wait_for
from tests.test_controlplane_support import cp_proc, migrated
from tests.test_ingest_support import audio_event, noise

__all__ = ["cp_proc", "migrated"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Room for one ~2.8 KB voice note event at a time; a second waits 1 s at most."""
    return settings.replace(ingest_http_buffer_bytes=4_000, ingest_http_wait_seconds=1.0)


def _event(message_id: str) -> bytes:
    return json.dumps(audio_event("budget", message_id, 10, data=noise(2_000))).encode()


async def _held(client: httpx.AsyncClient) -> int:
    text = (await client.get("/metrics")).text
    match = re.search(r"^fila_ingest_http_buffer_bytes (\S+)$", text, re.M)
    assert match, text[-2000:]
    return int(float(match.group(1)))


async def test_a_full_ingest_buffer_answers_429_then_takes_the_next(
    cp_proc: httpx.AsyncClient,
) -> None:
    first_body, second_body = _event("B1"), _event("B2")
    release = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield first_body[:100]
        await release.wait()  # the rest of the body comes only when the test says so
        yield first_body[100:]

    headers = {"content-type": "application/json"}
    first = asyncio.create_task(
        cp_proc.post(
            "/webhook/evolution",
            content=slow(),
            headers={**headers, "content-length": str(len(first_body))},
        )
    )
    try:
        await wait_for(lambda: _held_is(cp_proc, len(first_body)), timeout=30)
        busy = await cp_proc.post("/webhook/evolution", content=second_body, headers=headers)
        assert busy.status_code == 429, busy.text
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["statusCode"] == 429 and "ingest buffer full" in busy.json()["message"]
    finally:
        release.set()
    assert (await first).status_code == 202
    assert await _held(cp_proc) == 0
    taken = await cp_proc.post("/webhook/evolution", content=second_body, headers=headers)
    assert taken.status_code == 202, taken.text
    assert taken.json() == {"accepted": True, "id": "budget:B2"}


async def _held_is(client: httpx.AsyncClient, size: int) -> bool:
    return await _held(client) == size
