"""Dead letters on the real RabbitMQ: browse keeps them, replay moves them with their identity."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from fila import dlq, topology
from fila.settings import Settings
from tests.conftest import ROOT
from tests.support import wait_for


@pytest.fixture
async def channel(settings: Settings) -> AsyncIterator[AbstractChannel]:
    connection = await topology.connect(settings)
    chan = await connection.channel()
    await topology.declare_global(chan, settings)
    yield chan
    await connection.close()


async def _dead(channel: AbstractChannel, n: int, instance: str, reason: str) -> None:
    for i in range(n):
        body = json.dumps({"id": f"{instance}:m{i}", "instance": instance, "n": i}).encode()
        await channel.default_exchange.publish(
            aio_pika.Message(
                body,
                message_id=f"{instance}:m{i}",
                priority=7,
                headers={
                    topology.H_REASON: reason,
                    topology.H_STAGE: "delivery",
                    topology.H_ATTEMPTS: 3,
                    topology.H_STATUS: 400,
                    topology.H_RESPONSE: "bad request",
                    topology.H_FAILED_AT: "2026-01-01T00:00:00+00:00",
                },
            ),
            routing_key=topology.GLOBAL_DLQ,
        )


async def test_browse_is_non_destructive_and_ordered(channel: AbstractChannel) -> None:
    await _dead(channel, 3, "alpha", "http 400")
    await _dead(channel, 2, "beta", "retries exhausted")

    letters = await dlq.browse(channel, topology.GLOBAL_DLQ)
    assert [x.id for x in letters] == ["alpha:m0", "alpha:m1", "alpha:m2", "beta:m0", "beta:m1"]
    first = letters[0]
    assert (first.reason, first.stage, first.attempts, first.statusCode) == (
        "http 400",
        "delivery",
        3,
        400,
    )
    assert first.response == "bad request" and first.instance == "alpha"
    assert first.body == {"id": "alpha:m0", "instance": "alpha", "n": 0}

    only_beta = await dlq.browse(channel, topology.GLOBAL_DLQ, instance="beta")
    assert [x.id for x in only_beta] == ["beta:m0", "beta:m1"]
    exhausted = await dlq.browse(channel, topology.GLOBAL_DLQ, reason="exhausted", limit=1)
    assert [x.id for x in exhausted] == ["beta:m0"]
    # Still all there, in the same order.
    again = await dlq.browse(channel, topology.GLOBAL_DLQ)
    assert [x.id for x in again] == [x.id for x in letters]


async def test_replay_moves_matching_letters_with_id_and_priority(
    channel: AbstractChannel,
) -> None:
    await _dead(channel, 2, "alpha", "http 400")
    await _dead(channel, 1, "beta", "http 400")
    seen: list[tuple[int, int]] = []

    result = await dlq.replay(
        channel, topology.GLOBAL_DLQ, instance="alpha", progress=lambda d, t: seen.append((d, t))
    )
    assert (result.replayed, result.remaining) == (2, 1)
    assert seen[-1] == (2, 2)

    work = await channel.declare_queue(topology.GLOBAL_QUEUE, passive=True)
    got = []
    for _ in range(2):
        message = await work.get(no_ack=True, fail=True)
        assert message is not None
        got.append(message)
    assert sorted(m.message_id or "" for m in got) == ["alpha:m0", "alpha:m1"]
    assert {m.priority for m in got} == {7}
    assert all(topology.H_REASON not in (m.headers or {}) for m in got)
    left = await dlq.browse(channel, topology.GLOBAL_DLQ)
    assert [x.id for x in left] == ["beta:m0"]


async def test_ttl_expiry_reads_as_expired(channel: AbstractChannel) -> None:
    body = json.dumps({"id": "gamma:x", "instance": "gamma"}).encode()
    await channel.default_exchange.publish(
        aio_pika.Message(body, message_id="gamma:x", expiration=1),
        routing_key=topology.GLOBAL_QUEUE,
    )

    async def dead() -> bool:
        return bool(await dlq.browse(channel, topology.GLOBAL_DLQ))

    await wait_for(dead, timeout=20)
    [letter] = await dlq.browse(channel, topology.GLOBAL_DLQ)
    assert (letter.id, letter.reason, letter.stage, letter.instance) == (
        "gamma:x",
        "expired",
        "delivery",
        "gamma",
    )
    assert letter.failedAt is not None


async def test_ingest_replay_needs_a_target(channel: AbstractChannel) -> None:
    await channel.declare_queue(topology.INGEST_DLQ, durable=True)
    with pytest.raises(ValueError, match="target"):
        await dlq.replay(channel, topology.INGEST_DLQ)


async def _fila(settings: Settings, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "fila",
        *args,
        env={**os.environ, **settings.to_env(), "COLUMNS": "200"},
        cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode()


async def test_dlq_cli_lists_shows_and_names_a_missing_id(
    settings: Settings, channel: AbstractChannel
) -> None:
    await _dead(channel, 2, "alpha", "http 400")
    await _dead(channel, 1, "beta", "retries exhausted")

    code, out = await _fila(settings, "dlq", "list", "--reason", "400")
    assert code == 0, out
    assert "alpha:m0" in out and "alpha:m1" in out and "beta:m0" not in out
    assert "2 dead letter(s)" in out

    code, out = await _fila(settings, "dlq", "show", "beta:m0")
    assert code == 0, out
    shown = json.loads(out)
    assert (shown["reason"], shown["statusCode"], shown["body"]["instance"]) == (
        "retries exhausted",
        400,
        "beta",
    )

    code, out = await _fila(settings, "dlq", "show", "nope:1")
    assert code == 1
    assert out.strip().splitlines() == ["error: id: no dead letter 'nope:1' in global.messages.dlq"]
    # Looking never consumed anything.
    assert len(await dlq.browse(channel, topology.GLOBAL_DLQ)) == 3


async def test_ingest_dead_letters_replay_into_the_ingest_queue(
    settings: Settings, channel: AbstractChannel
) -> None:
    ingest = await topology.declare_ingest(channel, settings)
    event = {"event": "messages.upsert", "instance": "delta", "data": {"key": {"id": "K1"}}}
    await channel.default_exchange.publish(
        aio_pika.Message(
            json.dumps(event).encode(),
            message_id="delta:K1",
            headers={topology.H_REASON: "media download failed", topology.H_STAGE: "ingest"},
        ),
        routing_key=topology.INGEST_DLQ,
    )
    [letter] = await dlq.browse(channel, topology.INGEST_DLQ)
    assert (letter.stage, letter.reason, letter.instance) == (
        "ingest",
        "media download failed",
        "delta",
    )

    code, out = await _fila(settings, "dlq", "replay", "--queue", "ingest")
    assert code == 0, out
    assert f"replayed 1 into {settings.ingest_queue}, 0 remaining" in out
    message = await ingest.get(no_ack=True, fail=True)
    assert message is not None
    assert message.message_id == "delta:K1"
    assert json.loads(message.body) == event
    assert topology.H_REASON not in (message.headers or {})
