"""The /process routes through the real control plane (subprocesses, and the app in process)
with real Redis, PostgreSQL and an Evolution API stub over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient

from controlplane.app import create_app
from fila.settings import Settings
from simulator.evolution import EvolutionStub
from tests.support import Proc, wait_answering, wait_for
from tests.test_controlplane_support import free_port, migrated

ROOT = Path(__file__).resolve().parent.parent
CHAT = "5511988887777@s.whatsapp.net"
SPIN, WAIT = "🔄", "⏳"
__all__ = ["migrated"]


@pytest.fixture
async def stub(settings: Settings) -> AsyncIterator[EvolutionStub]:
    async with EvolutionStub(api_key=settings.evolution_api_key) as evolution:
        yield evolution


def fast(settings: Settings, stub: EvolutionStub) -> Settings:
    return settings.replace(
        evolution_url=stub.url, feedback_interval_seconds=0.3, feedback_timeout_seconds=60.0
    )


def emojis(stub: EvolutionStub, message_id: str) -> list[str]:
    return [
        c.json["reaction"]
        for c in stub.calls_to("sendReaction")
        if c.json["key"]["id"] == message_id and c.status < 400
    ]


def alternates(seq: list[str]) -> bool:
    return all(e == (SPIN if i % 2 == 0 else WAIT) for i, e in enumerate(seq))


async def serving(proc: Proc, port: int) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        url = f"http://127.0.0.1:{port}/healthz"
        await wait_answering(client, url, proc.popen, proc.output, timeout=90, interval=0.25)


async def test_control_plane_restart_and_replica_keep_one_loop_per_session(
    settings: Settings,
    migrated: Settings,
    stub: EvolutionStub,
    spawn: Callable[..., Proc],
) -> None:
    cfg = fast(settings, stub)
    message_id = f"CP{uuid.uuid4().hex[:8]}"
    session = {"instance": "cp", "chatId": CHAT, "messageId": message_id}
    ports = [free_port(), free_port()]
    first = spawn(["controlplane", "--no-migrate"], cfg, FILA_HTTP_PORT=str(ports[0]))
    await serving(first, ports[0])
    headers = {"apikey": cfg.api_key}
    async with httpx.AsyncClient(timeout=30, headers=headers) as client:
        one, two = (f"http://127.0.0.1:{p}" for p in ports)
        unauthorized = await client.post(
            f"{one}/process/start",
            json=session,
            headers={"apikey": "wrong"},
        )
        assert unauthorized.status_code == 401
        started = await client.post(
            f"{one}/process/start",
            json={**session, "processType": "ai"},
        )
        assert started.status_code == 200, started.text
        body = started.json()
        assert body["success"] is True and body["sessionId"] == f"cp:{CHAT}:{message_id}"
        assert "startedAt" in body
        await wait_for(lambda: len(emojis(stub, message_id)) >= 3, timeout=60)

        # A replica joins, then the first control plane stops: the loop goes on, once.
        second = spawn(["controlplane", "--no-migrate"], cfg, FILA_HTTP_PORT=str(ports[1]))
        await serving(second, ports[1])
        assert first.terminate() == 0, first.output()
        seen = len(emojis(stub, message_id))
        await wait_for(lambda: len(emojis(stub, message_id)) >= seen + 3, timeout=60)

        status = (await client.get(f"{two}/process/status")).json()
        assert status["activeSessionsCount"] == 1
        row = status["activeSessions"][0]
        assert row["sessionId"] == body["sessionId"] and row["processType"] == "ai"
        assert set(row) >= {
            "sessionId",
            "instance",
            "chatId",
            "messageId",
            "processType",
            "startTime",
            "timeoutAt",
            "currentReaction",
            "runningFor",
        }
        assert status["stats"]["activeCount"] == 1 and status["stats"]["totalStarted"] == 1

        finished = await client.post(
            f"{two}/process/finish",
            json={**session, "status": "error", "texto": "falhou"},
        )
        assert finished.status_code == 200, finished.text
        assert finished.json()["finalReaction"] == "❌"
        seq = emojis(stub, message_id)
        assert seq[-1] == "❌" and alternates(seq[:-1]), seq
        assert [c.json for c in stub.calls_to("sendText", "cp")] == [
            {"number": CHAT, "text": "falhou"}
        ]
        after = (await client.get(f"{two}/process/status")).json()
        assert after["activeSessionsCount"] == 0
        assert after["stats"]["averageProcessingTime"] == finished.json()["durationMs"]

    conn = await asyncpg.connect(cfg.database_url)
    try:
        rows = await conn.fetch(
            "SELECT instance, process_type, status, duration_ms FROM feedback_stat"
            " WHERE session_id = $1",
            body["sessionId"],
        )
    finally:
        await conn.close()
    assert [dict(r) for r in rows] == [
        {
            "instance": "cp",
            "process_type": "ai",
            "status": "error",
            "duration_ms": finished.json()["durationMs"],
        }
    ]


@pytest.fixture
async def cp(
    settings: Settings, migrated: Settings, stub: EvolutionStub
) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(fast(settings, stub)), timeout=30) as client:
        client.headers["apikey"] = settings.api_key
        yield client


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/process/start", {"instance": "i", "messageId": "m"}, "chatId"),
        ("/process/start", {"instance": "i", "chatId": "", "messageId": "m"}, "chatId"),
        ("/process/start", {"chatId": CHAT, "messageId": "m"}, "instance"),
        ("/process/start", {"instance": "i", "chatId": CHAT, "messageId": 5}, "messageId"),
        (
            "/process/finish",
            {"instance": "i", "chatId": CHAT, "messageId": "m", "status": "done"},
            "status",
        ),
        ("/process/finish", {"instance": "i", "chatId": CHAT, "messageId": "m"}, "status"),
        (
            "/process/finish",
            {"instance": "i", "chatId": CHAT, "messageId": "m", "status": "error", "texto": 1},
            "texto",
        ),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(
    cp: AsyncTestClient[Any], path: str, body: dict[str, Any], field: str
) -> None:
    answer = await cp.post(path, json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field and field in answer.json()["message"]


async def test_unknown_sessions_are_404_and_delete_cleans_up(
    cp: AsyncTestClient[Any], stub: EvolutionStub
) -> None:
    missing = await cp.post(
        "/process/finish",
        json={"instance": "i", "chatId": CHAT, "messageId": "nope", "status": "success"},
    )
    assert missing.status_code == 404 and "nope" in missing.json()["message"]
    assert (await cp.delete(f"/process/i:{CHAT}:nope")).status_code == 404

    started = await cp.post(
        "/process/start", json={"instance": "i", "chatId": CHAT, "messageId": "DEL1"}
    )
    sid = started.json()["sessionId"]
    await wait_for(lambda: len(emojis(stub, "DEL1")) >= 1, timeout=30)
    deleted = await cp.delete(f"/process/{sid}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["success"] is True and deleted.json()["sessionId"] == sid
    assert deleted.json()["cleanedAt"]
    status = (await cp.get("/process/status")).json()
    assert status["activeSessionsCount"] == 0 and status["activeSessions"] == []
    orphans = await cp.post("/process/cleanup-orphans")
    assert orphans.status_code == 200 and orphans.json() == {"removed": 0}
    assert (await cp.get("/process/status", headers={"apikey": ""})).status_code == 401
