"""Ingest worker end to end: real RabbitMQ, Redis, S3 and a real `fila worker ingest` process."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import httpx
import msgspec

from fila import mediacrypto, topology
from fila.keys import Keys
from fila.models import MonitoringEvent, QueuedAudio, RateLimitConfig
from fila.ratelimit import priority_of
from fila.settings import Settings
from simulator.evolution import EvolutionStub
from tests.support import Proc, wait_for
from tests.test_ingest_support import (
    audio_event,
    counters,
    enc_event,
    noise,
    rabbit,
    s3_get,
    s3_objects,
    text_event,
    workers,
)
from workers.enqueue import H_DETAIL, defer_delay_ms
from workers.storage import extension, object_key

KEY_RE = re.compile(r"^audio_(\d{13})_(?P<instance>[\w.-]+)\.(?P<ext>\w+)$")


async def test_base64_event_is_stored_queued_and_bad_input_dead_lettered(
    settings: Settings, redis: Any, keys: Keys, spawn: Callable[..., Proc]
) -> None:
    settings = settings.replace(max_audio_bytes=7_000_000, s3_multipart_threshold=100_000)
    voice = noise(40_000)
    big = noise(6_000_000)
    mp3 = noise(3_000)
    ok = audio_event("inst-a", "MSG-OK", 12, data=voice)
    async with rabbit(settings) as mq:
        proc = spawn(["worker", "ingest"], settings)
        for event in (
            ok,
            audio_event("inst-a", "MSG-SHORT", 1, data=noise(100)),
            audio_event("inst-a", "MSG-LONG", 7201, data=noise(100)),
            audio_event("inst-b", "MSG-MP3", "15", data=mp3, mimetype="audio/mpeg"),
            audio_event("inst-b", "MSG-BIG", 30, data=big, mimetype="audio/mp4"),
            text_event("inst-b", "MSG-TEXT"),
            b"{not json",
            audio_event("inst-c", "MSG-TYPE", "twelve", data=noise(10)),
            {**audio_event("inst-c", "MSG-NOINST", 10), "instance": 42},
            audio_event("inst-c", "MSG-NOSEC", None, data=noise(10)),
            _with_base64(audio_event("inst-c", "MSG-CORRUPT", 10), "@@not*base64@@"),
            audio_event("inst-c", "MSG-HUGE", 10, data=noise(7_000_001)),
            audio_event("shop/1", "MSG-SLASH", 10, data=noise(10)),
        ):
            await mq.publish(event)

        async def settled() -> bool:
            c = await counters(redis, keys)
            done = c.get("processed", 0) + c.get("tooShort", 0) + c.get("tooLong", 0)
            return done == 5 and c.get("ingestFailed", 0) == 7 and c.get("nonAudio", 0) == 1

        await _wait(settled, proc, redis, keys, timeout=60)
        # Redelivery of an event already queued: recognised, not uploaded again.
        await mq.publish(ok)
        await wait_for(lambda: _count(redis, keys, "duplicates", 1), timeout=30)

        glob = await counters(redis, keys)
        # audio events: 5 passed/filtered, 3 failed later (no seconds: unreadable), 1 duplicate
        assert glob["received"] == 5 + 3 + 1
        assert (glob["processed"], glob["tooShort"], glob["tooLong"]) == (3, 1, 1)
        inst_a = await counters(redis, keys, "inst-a")
        assert (inst_a["processed"], inst_a["tooShort"], inst_a["tooLong"]) == (1, 1, 1)
        assert (await counters(redis, keys, "inst-b"))["processed"] == 2
        assert int(await redis.hget(keys.non_audio, "conversation")) == 1

        queued = await mq.drain(topology.GLOBAL_QUEUE)
        assert len(queued) == 3
        items = {m.message_id: msgspec.json.decode(m.body, type=QueuedAudio) for m in queued}
        for message in queued:
            assert message.delivery_mode == 2
            assert message.content_type == "application/json"
            assert message.priority == 1
        item = items["inst-a:MSG-OK"]
        assert item.key.id == "MSG-OK" and item.instance == "inst-a"
        assert item.audioDuration == 12 and item.mimeType == "audio/ogg; codecs=opus"
        assert "base64" not in item.message and item.message["audioMessage"]["seconds"] == 12
        match = KEY_RE.match(item.s3Key)
        assert match and match["instance"] == "inst-a" and match["ext"] == "ogg"
        stored, content_type = await s3_get(settings, item.s3Key)
        assert stored == voice and content_type == "audio/ogg; codecs=opus"
        async with httpx.AsyncClient() as client:  # the presigned URL really serves it
            fetched = await client.get(item.audioUrl)
        assert fetched.status_code == 200 and fetched.content == voice
        assert items["inst-b:MSG-MP3"].s3Key.endswith("_inst-b.mp3")
        assert items["inst-b:MSG-MP3"].audioDuration == 15
        big_item = items["inst-b:MSG-BIG"]
        assert big_item.s3Key.endswith(".m4a")
        assert (await s3_get(settings, big_item.s3Key))[0] == big  # multipart upload
        assert len(await s3_objects(settings)) == 3  # the duplicate uploaded nothing

        dead = await mq.drain(topology.INGEST_DLQ)
        got = sorted((_idem(m.message_id), _h(m.headers[topology.H_REASON])) for m in dead)
        assert got == [
            ("-", "bad_json"),
            ("-", "invalid_event"),
            ("-", "invalid_event"),
            ("inst-c:MSG-CORRUPT", "corrupt_base64"),
            ("inst-c:MSG-HUGE", "oversized"),
            ("inst-c:MSG-NOSEC", "unreadable_duration"),
            ("inst-c:MSG-TYPE", "invalid_event"),
        ]
        details = {_idem(m.message_id): _h(m.headers[H_DETAIL]) for m in dead}
        assert "$.data.message.audioMessage.seconds" in details["inst-c:MSG-TYPE"]
        assert any("`$.instance`" in _h(m.headers[H_DETAIL]) for m in dead)
        garbage = [m for m in dead if m.body == b"{not json"]
        assert garbage, "the original bytes are kept"
        for message in dead:
            assert _h(message.headers[topology.H_STAGE]) == "ingest"
            assert _h(message.headers[topology.H_ATTEMPTS]) == "1"
            assert _h(message.headers[topology.H_FAILED_AT]).startswith("20")

        errors = [
            msgspec.json.decode(m.body, type=MonitoringEvent)
            for m in await mq.drain(topology.MONITORING_QUEUE)
        ]
        assert all(e.event == "queue.error" for e in errors)
        assert len(errors) == 7
        assert proc.terminate() == 0


def _with_base64(event: dict[str, Any], text: str) -> dict[str, Any]:
    event["data"]["message"]["base64"] = text
    return event


def _idem(message_id: str | None) -> str:
    """The idempotency key of a dead letter, '-' when the event was unreadable."""
    return message_id if message_id and ":" in message_id else "-"


def _h(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _count(redis: Any, keys: Keys, field: str, n: int) -> bool:
    return (await counters(redis, keys)).get(field, 0) == n


async def _wait(
    predicate: Callable[[], object], proc: Proc, redis: Any, keys: Keys, timeout: float
) -> None:
    """`wait_for`, but a failure shows the counters and the worker's log."""
    try:
        await wait_for(predicate, timeout=timeout)
    except AssertionError as exc:
        glob = await counters(redis, keys)
        log = proc.output()[-4000:]
        raise AssertionError(f"{exc}; counters {glob}; worker log:\n{log}") from None


async def test_media_from_evolution_api_and_encrypted_download(
    settings: Settings, redis: Any, keys: Keys, spawn: Callable[..., Proc]
) -> None:
    plain = noise(50_000)
    via_api = noise(20_000)
    async with EvolutionStub(api_key=settings.evolution_api_key) as stub, rabbit(settings) as mq:
        settings = settings.replace(
            evolution_url=stub.url, ingest_max_attempts=2, hold_probe_seconds=1.0
        )
        proc = spawn(["worker", "ingest"], settings)
        good = enc_event(stub, "inst-enc", "ENC-OK", plain)
        tampered = enc_event(stub, "inst-enc", "ENC-TAMPER", plain, tamper=True)
        wrong_key = enc_event(stub, "inst-enc", "ENC-KEY", plain, key=mediacrypto.new_media_key())
        gone = enc_event(stub, "inst-enc", "ENC-GONE", plain)
        gone["data"]["message"]["audioMessage"]["url"] = f"{stub.url}/media/nothing-here"
        for event in (good, tampered, wrong_key, gone):
            await mq.publish(event)
        await _wait(lambda: _count(redis, keys, "ingestFailed", 3), proc, redis, keys, 60)
        await _wait(lambda: _count(redis, keys, "processed", 1), proc, redis, keys, 30)
        # Evolution API had none of them (404), so each fell back to the download.
        assert len(stub.calls_to("getBase64", "inst-enc")) == 4
        assert all(
            c.json == {"message": {"key": {"id": c.json["message"]["key"]["id"]}}}
            for c in stub.calls_to("getBase64")
        )

        # getBase64FromMediaMessage failing twice is retried within the same attempt.
        stub.add_media("API-OK", via_api, "audio/ogg; codecs=opus")
        stub.fail_next("getBase64", 2, 503)
        await mq.publish(audio_event("inst-api", "API-OK", 9))
        await _wait(lambda: _count(redis, keys, "processed", 2), proc, redis, keys, 30)
        api_calls = [c for c in stub.calls_to("getBase64", "inst-api")]
        assert [c.status for c in api_calls] == [503, 503, 201]

        # With the API down, an event that also has the .enc url still gets through.
        stub.fail_next("getBase64", 1000, 503)
        fallback = noise(5_000)
        await mq.publish(enc_event(stub, "inst-enc", "ENC-FALLBACK", fallback))
        await _wait(lambda: _count(redis, keys, "processed", 3), proc, redis, keys, 30)
        # Down and no url: the API's outage, not the event's: held, no attempt spent, and
        # queued once the API answers again.
        await mq.publish(audio_event("inst-api", "API-DOWN", 9))

        async def holding() -> bool:
            return any(w["holding"] for w in await workers(redis, keys))

        await _wait(holding, proc, redis, keys, 30)
        await asyncio.sleep(3)
        assert (await counters(redis, keys)).get("ingestFailed") == 3
        stub.add_media("API-DOWN", via_api, "audio/ogg; codecs=opus")
        stub.recover("getBase64")
        await _wait(lambda: _count(redis, keys, "processed", 4), proc, redis, keys, 30)

        queued = {
            m.message_id: msgspec.json.decode(m.body, type=QueuedAudio)
            for m in await mq.drain(topology.GLOBAL_QUEUE)
        }
        assert set(queued) == {
            "inst-enc:ENC-OK",
            "inst-api:API-OK",
            "inst-enc:ENC-FALLBACK",
            "inst-api:API-DOWN",
        }
        assert (await s3_get(settings, queued["inst-enc:ENC-FALLBACK"].s3Key))[0] == fallback
        assert (await s3_get(settings, queued["inst-enc:ENC-OK"].s3Key))[0] == plain
        api_item = queued["inst-api:API-OK"]
        assert (await s3_get(settings, api_item.s3Key)) == (via_api, "audio/ogg; codecs=opus")

        dead = {m.message_id: m for m in await mq.drain(topology.INGEST_DLQ)}
        reasons = {k: _h(m.headers[topology.H_REASON]) for k, m in dead.items()}
        assert reasons == {
            "inst-enc:ENC-TAMPER": "enc_sha256_mismatch",
            "inst-enc:ENC-KEY": "mac_mismatch",
            "inst-enc:ENC-GONE": "download_failed",
        }
        assert _h(dead["inst-enc:ENC-KEY"].headers[topology.H_ATTEMPTS]) == "1"
        assert dead["inst-enc:ENC-KEY"].body == msgspec.json.encode(wrong_key)
        assert proc.terminate() == 0


def test_object_names_and_delay_tiers() -> None:
    assert [
        extension(m)
        for m in (
            "audio/ogg; codecs=opus",
            "audio/mpeg",
            "audio/mp4",
            "audio/aac",
            "audio/wav",
            "AUDIO/OGG",
            "video/x-unknown",
        )
    ] == ["ogg", "mp3", "m4a", "aac", "wav", "ogg", "bin"]
    assert object_key("inst-1", "audio/mpeg", 1764000000123) == "audio_1764000000123_inst-1.mp3"
    assert [defer_delay_ms(ms) for ms in (0, 1, 250, 251, 4999, 10**7)] == [
        250,
        250,
        250,
        500,
        5000,
        60000,
    ]
    weighted = RateLimitConfig(weights={"heavy": 3})
    assert (priority_of(weighted, "any"), priority_of(weighted, "heavy")) == (1, 3)
