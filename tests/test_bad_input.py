"""Malformed events on both inputs at once (RabbitMQ exchange and POST /webhook/evolution),
each followed by a valid event on the other input: every bad one is refused with a 4xx naming
the field or dead-lettered with a reason, and every valid one still reaches global.messages.

tests/test_ingest.py covers each AMQP failure kind on its own; this is the mixed stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest

from controlplane.app import body_limit
from fila import mediacrypto, topology
from fila.keys import Keys
from fila.settings import Settings
from simulator.evolution import EvolutionStub
from tests.support import Proc, wait_for
from tests.test_controlplane_support import cp_proc, migrated
from tests.test_ingest_support import audio_event, counters, enc_event, noise, rabbit
from workers.enqueue import H_DETAIL

__all__ = ["cp_proc", "migrated"]

MAX_AUDIO = 300_000


@pytest.fixture
async def settings(settings: Settings) -> Settings:
    """Small audio limit (so the HTTP body limit is small too); one attempt per event."""
    return settings.replace(max_audio_bytes=MAX_AUDIO, ingest_max_attempts=1)


def _bad_base64(message_id: str) -> dict[str, Any]:
    event = audio_event("bad-in", message_id, 10)
    event["data"]["message"]["base64"] = "@@not*base64@@"
    return event


def _seconds(message_id: str, value: Any) -> dict[str, Any]:
    return audio_event("bad-in", message_id, value, data=noise(100))


def _wrong_media_key(stub: EvolutionStub, message_id: str) -> dict[str, Any]:
    """A `.enc` on the stub's CDN announced with another media key: the MAC cannot match."""
    wrong = mediacrypto.new_media_key()
    return enc_event(stub, "bad-in", message_id, noise(5_000), 10, key=wrong, direct_path=False)


def _json(event: dict[str, Any] | bytes) -> bytes:
    return event if isinstance(event, bytes) else msgspec.json.encode(event)


async def test_bad_events_on_both_inputs_and_the_good_ones_flow_on(
    settings: Settings,
    cp_proc: httpx.AsyncClient,
    redis: Any,
    keys: Keys,
    spawn: Callable[..., Proc],
) -> None:
    limit = body_limit(settings)
    no_data = {"event": "messages.upsert", "instance": "bad-in", "apikey": "k"}
    async with EvolutionStub(api_key=settings.evolution_api_key) as stub, rabbit(settings) as mq:
        worker_settings = settings.replace(evolution_url=stub.url)
        worker = spawn(["worker", "ingest"], worker_settings)
        over_limit = audio_event("bad-in", "HTTP-OVER", 10, data=noise(limit * 3 // 4 + 16))
        # (input, body, HTTP status expected, field named | dead-letter reason expected)
        bad: list[tuple[str, dict[str, Any] | bytes, int, str]] = [
            ("http", b"\x00\xff garbage \xfe", 400, "body"),
            ("http", b"[1, 2, 3]", 400, "body"),
            ("http", {**audio_event("bad-in", "HTTP-INST", 10), "instance": 42}, 400, "instance"),
            ("http", {**audio_event("", "HTTP-EMPTY", 10)}, 400, "instance"),
            ("http", no_data, 400, "data.key.id"),
            ("http", over_limit, 413, "body"),
            ("http", _bad_base64("HTTP-BADB64"), 202, "corrupt_base64"),
            ("http", _wrong_media_key(stub, "HTTP-WRONGKEY"), 202, "mac_mismatch"),
            # What the worker would dead-letter is refused at the door, naming the field.
            (
                "http",
                _seconds("HTTP-TYPE", "twelve"),
                400,
                "data.message.audioMessage.seconds",
            ),
            (
                "http",
                audio_event("bad-in", "HTTP-HUGE", 10, data=noise(MAX_AUDIO + 1)),
                202,
                "oversized",
            ),
            ("http", audio_event("shop/1", "HTTP-SLASH", 10, data=noise(10)), 400, "instance"),
            ("http", audio_event("shop\x01", "HTTP-CTRL", 10, data=noise(10)), 400, "instance"),
            ("amqp", b"\x00\xff garbage \xfe", 0, "bad_json"),
            (
                "amqp",
                {**audio_event("bad-in", "AMQP-INST", 10), "instance": 42},
                0,
                "invalid_event",
            ),
            ("amqp", no_data, 0, "invalid_event"),
            ("amqp", _seconds("AMQP-TYPE", [12]), 0, "invalid_event"),
            ("amqp", _bad_base64("AMQP-BADB64"), 0, "corrupt_base64"),
            ("amqp", _wrong_media_key(stub, "AMQP-WRONGKEY"), 0, "mac_mismatch"),
            (
                "amqp",
                audio_event("bad-in", "AMQP-HUGE", 10, data=noise(MAX_AUDIO + 1)),
                0,
                "oversized",
            ),
            ("amqp", audio_event("shop/1", "AMQP-SLASH", 10, data=noise(10)), 0, "invalid_event"),
        ]
        expected_dead: list[tuple[bytes, str]] = []
        good: set[str] = set()
        for n, (where, body, status, what) in enumerate(bad):
            raw = _json(body)
            if where == "http":
                answer = await cp_proc.post(
                    "/webhook/evolution", content=raw, headers={"content-type": "application/json"}
                )
                assert answer.status_code == status, (n, answer.text[:300])
                if status >= 400:
                    error = answer.json()
                    assert error["field"] == what and error["message"].startswith(f"{what}: ")
                    if status == 413:
                        assert str(limit) in error["message"], error
                else:
                    expected_dead.append((raw, what))
            else:
                await mq.publish(raw)
                expected_dead.append((raw, what))
            # A valid event right behind it, on the other input.
            ok = audio_event("bad-ok", f"OK-{n:02d}", 10, data=noise(2_000))
            good.add(f"bad-ok:OK-{n:02d}")
            if where == "http":
                await mq.publish(ok)
            else:
                sent = await cp_proc.post("/webhook/evolution", json=ok)
                assert sent.status_code == 202, sent.text

        async def settled() -> bool:
            assert worker.popen.poll() is None, worker.output()[-3000:]
            queued = await mq.depth(topology.GLOBAL_QUEUE)
            dead = await mq.depth(topology.INGEST_DLQ)
            return queued == len(good) and dead == len(expected_dead)

        try:
            await wait_for(settled, timeout=120, interval=0.3)
        except AssertionError:
            raise AssertionError(
                f"{await counters(redis, keys)}\n{worker.output()[-3000:]}"
            ) from None
        queued = await mq.drain(topology.GLOBAL_QUEUE)
        assert {m.message_id for m in queued} == good
        dead = await mq.drain(topology.INGEST_DLQ)
        got = sorted((m.body, _h(m.headers[topology.H_REASON])) for m in dead)
        assert got == sorted(expected_dead)
        for message in dead:
            assert _h(message.headers[topology.H_STAGE]) == "ingest"
            assert _h(message.headers[H_DETAIL]), message.headers
        glob = await counters(redis, keys)
        assert glob["processed"] == len(good)
        assert glob["ingestFailed"] == len(expected_dead)
    assert worker.terminate() == 0, worker.output()[-3000:]


def _h(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
