"""Evolution API as operators run it (issue 16), against the real servers and the stand-in:
ingest tokens in the URL, per-instance exchanges, durations read from the audio, fromMe reactions.
"""

from __future__ import annotations

import array
import io
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import aio_pika
import av
import httpx
import msgspec
import pytest

from fila import topology
from fila.keys import Keys
from fila.models import QueuedAudio
from fila.settings import Settings
from simulator.audio import voice_note
from simulator.evolution import EvolutionStub, publish_per_instance
from simulator.receiver import Receiver
from tests.support import Proc, wait_answering, wait_for
from tests.test_controlplane_support import migrated, start_controlplane
from tests.test_ingest_support import audio_event, counters, rabbit
from workers.duration import UnreadableDuration, audio_seconds

__all__ = ["migrated"]


def tone(fmt: str, codec: str, seconds: float, rate: int) -> bytes:
    """A 440 Hz tone encoded in memory by FFmpeg's own encoders (PyAV): real Opus/AAC/MP3."""
    out_buf = io.BytesIO()
    with av.open(out_buf, "w", format=fmt) as out:
        stream: Any = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        total = int(seconds * rate)
        for start in range(0, total, 1024):
            n = min(1024, total - start)
            pcm = array.array(
                "h",
                (int(8000 * math.sin(2 * math.pi * 440 * (start + i) / rate)) for i in range(n)),
            )
            frame = av.AudioFrame(format="s16", layout="mono", samples=n)
            frame.planes[0].update(pcm.tobytes())
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return out_buf.getvalue()


def _management(settings: Settings) -> tuple[str, tuple[str, str], str]:
    mgmt = urlsplit(settings.rabbitmq_management_url)
    vhost = urlsplit(settings.rabbitmq_url).path.lstrip("/") or "/"
    auth = (mgmt.username or "guest", mgmt.password or "guest")
    return f"{mgmt.scheme}://{mgmt.hostname}:{mgmt.port}", auth, vhost


async def bound_exchanges(settings: Settings) -> set[str]:
    """Exchanges the ingest queue is bound to with messages.upsert, as RabbitMQ reports them."""
    base, auth, vhost = _management(settings)
    path = f"/api/queues/{quote(vhost, safe='')}/{quote(settings.ingest_queue, safe='')}/bindings"
    async with httpx.AsyncClient(base_url=base, auth=auth, timeout=10) as client:
        answer = await client.get(path)
    if answer.status_code == 404:
        return set()
    answer.raise_for_status()
    return {
        b["source"]
        for b in answer.json()
        if b["source"] and b["routing_key"] == settings.evolution_routing_key
    }


class ControlPlane(httpx.AsyncClient):
    """A client of a real `fila controlplane` process; `proc_output` is its log once stopped."""

    proc_output = ""


@asynccontextmanager
async def controlplane(
    settings: Settings, spawn: Callable[..., Proc], admin: bool = True
) -> AsyncIterator[ControlPlane]:
    proc, base = start_controlplane(spawn, settings)
    headers = {"apikey": settings.api_key} if admin else {}
    async with ControlPlane(base_url=base, timeout=30, headers=headers) as client:
        await wait_answering(client, popen=proc.popen, output=proc.output)
        yield client
        assert proc.terminate() == 0, proc.output()
        client.proc_output = proc.output()


# ------------------------------------------------------------------------------ ingest tokens


async def test_token_url_with_event_suffix_is_accepted_and_no_token_reaches_a_log(
    settings: Settings, migrated: Settings, spawn: Callable[..., Proc]
) -> None:
    old, new = f"old-{uuid.uuid4().hex}", f"new-{uuid.uuid4().hex}"
    wrong = f"guess-{uuid.uuid4().hex}"
    settings = settings.replace(ingest_tokens=f"{old},{new}", log_level="INFO", auth_fail_limit=6)
    async with rabbit(settings) as mq, controlplane(settings, spawn, admin=False) as http:

        def body(n: int) -> bytes:
            event = audio_event("tok-inst", f"TOK-{n}", 10, data=voice_note(10))
            return msgspec.json.encode(event)

        json_type = {"content-type": "application/json"}
        # Evolution's global webhook with "webhook by events": no header at all.
        first = await http.post(f"/webhook/evolution/t/{old}/messages-upsert", content=body(1))
        assert first.status_code == 202, first.text
        assert first.json() == {"accepted": True, "id": "tok-inst:TOK-1"}
        # Rotation: the new token works alongside the old one, path without the suffix too.
        second = await http.post(f"/webhook/evolution/t/{new}", content=body(2), headers=json_type)
        assert second.status_code == 202, second.text
        # Header form (per-instance webhook headers) and the admin key for operators.
        by_header = await http.post(
            "/webhook/evolution", content=body(3), headers={"x-fila-ingest-token": new}
        )
        assert by_header.status_code == 202, by_header.text
        by_admin = await http.post(
            "/webhook/evolution/messages-upsert",
            content=body(4),
            headers={"apikey": settings.api_key},
        )
        assert by_admin.status_code == 202, by_admin.text

        refused = [
            await http.post(f"/webhook/evolution/t/{wrong}/messages-upsert", content=body(5)),
            await http.post(f"/webhook/evolution/t/{wrong}", content=body(6)),
            await http.post(f"/webhook/evolution/t/{old[:-1]}", content=body(7)),
            await http.post("/webhook/evolution", content=body(8)),
            await http.post(
                "/webhook/evolution", content=body(9), headers={"x-fila-ingest-token": wrong}
            ),
            await http.post(
                "/webhook/evolution", content=body(10), headers={"apikey": "wrong-key"}
            ),
        ]
        assert [r.status_code for r in refused] == [401] * len(refused)
        assert refused[0].json()["message"].startswith("token: ")
        assert refused[4].json()["message"].startswith("x-fila-ingest-token: ")
        for answer in refused:
            assert wrong not in answer.text and old not in answer.text

        # Past FILA_AUTH_FAIL_LIMIT failures from this address: 429; a right token still passes.
        throttled = await http.post(f"/webhook/evolution/t/{wrong}", content=body(11))
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
        assert wrong not in throttled.text
        still = await http.post(f"/webhook/evolution/t/{new}/messages-upsert", content=body(12))
        assert still.status_code == 202, still.text
        assert await mq.depth(settings.ingest_queue) == 5  # only the accepted five were queued
        metrics = await http.get("/metrics", headers={"apikey": settings.api_key})
        assert metrics.status_code == 200
        for token in (old, new, wrong):
            assert token not in metrics.text
    output = http.proc_output
    # The access log did record the requests (masked), so the check below is not vacuous.
    assert "/webhook/evolution/t/***/messages-upsert" in output, output[-2000:]
    assert output.count("/webhook/evolution/t/***") == 7  # 3 accepted, 4 refused
    for token in (old, new, wrong, old[:-1]):
        assert token not in output


# ------------------------------------------------------------------------- per-instance mode


async def test_per_instance_exchanges_are_bound_and_a_new_instance_is_picked_up(
    settings: Settings, redis: Any, keys: Keys, spawn: Callable[..., Proc]
) -> None:
    refresh = 1.5
    names = [f"shop-{n:02d}" for n in range(20)]
    async with (
        EvolutionStub(api_key=settings.evolution_api_key) as stub,
        Receiver(secret=settings.webhook_secret) as receiver,
    ):
        for name in names:
            stub.add_instance(name)
        settings = settings.replace(
            evolution_rabbitmq_mode="instance",
            evolution_url=stub.url,
            evolution_instances_refresh_seconds=refresh,
            webhook_principal_url=receiver.url,
            delivery_retry_schedule="0.2,0.5",
        )
        connection = await aio_pika.connect(settings.rabbitmq_url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            # Evolution API declared some exchanges before Fila came up (same arguments).
            for name in names[:5]:
                await publish_per_instance(channel, name, b'{"warm-up": true}')
            spawn(["worker", "ingest"], settings)
            spawn(["worker", "delivery"], settings)

            async def all_bound() -> bool:
                return set(names) <= await bound_exchanges(settings)

            await wait_for(all_bound, timeout=60, interval=0.3)
            assert stub.calls_to("fetchInstances"), "instances came from fetchInstances"
            for n, name in enumerate(names):
                event = audio_event(name, f"PI-{n}", 8, data=voice_note(8))
                await publish_per_instance(channel, name, event)
            delivered = await receiver.wait_for_count(len(names), timeout=90)
            assert sorted(d.json["instance"] for d in delivered) == names

            # Added while Fila runs: bound within the re-check period (plus one pass's time).
            added_at = time.monotonic()
            stub.add_instance("shop-late")
            await wait_for(lambda: _has(settings, "shop-late"), timeout=refresh + 10, interval=0.1)
            assert time.monotonic() - added_at <= refresh + 3
            late = audio_event("shop-late", "PI-LATE", 8, data=voice_note(8))
            await publish_per_instance(channel, "shop-late", late)
            delivered = await receiver.wait_for_count(len(names) + 1, timeout=60)
            assert "shop-late" in {d.json["instance"] for d in delivered}

            # A deleted instance is harmless: the next passes go on, the others still flow.
            stub.remove_instance("shop-00")
            passes = len(stub.calls_to("fetchInstances"))
            await wait_for(lambda: _more(stub, passes + 1), timeout=refresh * 3 + 10, interval=0.2)
            again = audio_event("shop-01", "PI-AGAIN", 8, data=voice_note(8))
            await publish_per_instance(channel, "shop-01", again)
            await receiver.wait_for_count(len(names) + 2, timeout=60)
            # Evolution's own queues were filled too: Fila read from its own queue only.
            evolution_queue = await channel.declare_queue(
                "shop-01.messages.upsert",
                durable=True,
                arguments={"x-queue-type": "quorum"},
                passive=True,
            )
            assert evolution_queue.declaration_result.message_count == 3  # warm-up + 2 notes
        finally:
            await connection.close()
    assert (await counters(redis, keys)).get("ingestFailed", 0) == 0


async def _has(settings: Settings, name: str) -> bool:
    return name in await bound_exchanges(settings)


async def _more(stub: EvolutionStub, n: int) -> bool:
    return len(stub.calls_to("fetchInstances")) >= n


async def test_fetch_instances_stand_in_answers_like_evolution(settings: Settings) -> None:
    async with EvolutionStub(api_key=settings.evolution_api_key) as stub:
        stub.add_instance("a")
        stub.add_instance("b")
        async with httpx.AsyncClient(base_url=stub.url, timeout=10) as http:
            key = {"apikey": settings.evolution_api_key}
            rows = (await http.get("/instance/fetchInstances", headers=key)).json()
            assert [r["name"] for r in rows] == ["a", "b"]
            one = await http.get("/instance/fetchInstances?instanceName=b", headers=key)
            assert [r["name"] for r in one.json()] == ["b"]
            missing = await http.get("/instance/fetchInstances?instanceName=zz", headers=key)
            assert missing.status_code == 404
            refused = await http.get("/instance/fetchInstances", headers={"apikey": "nope"})
            assert refused.status_code == 401


# ---------------------------------------------------------------- duration from the audio


def test_durations_are_read_from_real_encodings_in_memory() -> None:
    cases = [
        ("ogg", "libopus", 48_000, "audio/ogg; codecs=opus"),
        ("ipod", "aac", 44_100, "audio/mp4"),
        ("mp3", "libmp3lame", 44_100, "audio/mpeg"),
        ("adts", "aac", 44_100, "audio/aac"),
    ]
    for fmt, codec, rate, mime in cases:
        data = tone(fmt, codec, 4.2, rate)
        assert abs(audio_seconds(data, mime) - 4.2) < 0.2, fmt
    # A wrong mimetype still reads (mutagen's own guess), garbage does not.
    assert abs(audio_seconds(voice_note(9), "audio/mpeg") - 9) < 0.1
    with pytest.raises(UnreadableDuration):
        audio_seconds(b"\x00" * 4000, "audio/ogg; codecs=opus")


async def test_notes_without_seconds_are_measured_filtered_and_short_ones_take_no_token(
    settings: Settings, redis: Any, keys: Keys, spawn: Callable[..., Proc]
) -> None:
    notes = {
        "dur-ogg": (tone("ogg", "libopus", 7.4, 48_000), "audio/ogg; codecs=opus", None),
        "dur-m4a": (tone("ipod", "aac", 5.6, 44_100), "audio/mp4", 0),
        "dur-mp3": (tone("mp3", "libmp3lame", 12.3, 44_100), "audio/mpeg", None),
    }
    real = {"dur-ogg": 7.4, "dur-m4a": 5.6, "dur-mp3": 12.3}
    short = tone("mp3", "libmp3lame", 1.3, 44_100)
    # Exactly one token per long note: a short note that took one would starve a long one.
    settings = settings.replace(rate_capacity=len(notes), rate_refill_per_minute=0.01)
    async with rabbit(settings) as mq:
        spawn(["worker", "ingest"], settings)
        for n in range(2):
            event = audio_event("dur-short", f"SHORT-{n}", None, data=short, mimetype="audio/mpeg")
            await mq.publish(event)

        async def filtered() -> bool:
            return (await counters(redis, keys)).get("tooShort", 0) == 2

        await wait_for(filtered, timeout=60)
        for instance, (data, mime, seconds) in notes.items():
            event = audio_event(instance, f"{instance}-1", seconds, data=data, mimetype=mime)
            await mq.publish(event)

        async def queued() -> bool:
            c = await counters(redis, keys)
            return c.get("processed", 0) + c.get("rateLimited", 0) >= len(notes)

        await wait_for(queued, timeout=60)
        totals = await counters(redis, keys)
        assert totals.get("rateLimited", 0) == 0 and totals["processed"] == len(notes)
        items = [
            msgspec.json.decode(m.body, type=QueuedAudio)
            for m in await mq.drain(topology.GLOBAL_QUEUE)
        ]
        assert sorted(i.instance for i in items) == sorted(notes)
        for item in items:
            assert abs(item.audioDuration - real[item.instance]) <= 1, item
            assert item.mimeType == notes[item.instance][1]
        assert (await counters(redis, keys, "dur-short")).get("tooShort") == 2


# ------------------------------------------------------------------------- fromMe reactions


async def test_reactions_of_a_from_me_session_carry_from_me_and_lid_chats_pass_unchanged(
    settings: Settings, migrated: Settings, spawn: Callable[..., Proc]
) -> None:
    async with EvolutionStub(api_key=settings.evolution_api_key) as stub:
        fast = settings.replace(
            evolution_url=stub.url, feedback_interval_seconds=0.3, feedback_timeout_seconds=60.0
        )
        async with controlplane(fast, spawn) as cp:
            await _from_me_session(cp, stub)


async def _from_me_session(cp: httpx.AsyncClient, stub: EvolutionStub) -> None:
    own = {"instance": "fm", "chatId": "123456789012345@lid", "messageId": "OWN1", "fromMe": True}
    other = {"instance": "fm", "chatId": "5511977776666@s.whatsapp.net", "messageId": "THEIRS1"}
    for body in (own, other):
        started = await cp.post("/process/start", json={**body, "processType": "transcription"})
        assert started.status_code in (200, 201), started.text
    bad = await cp.post("/process/start", json={**own, "messageId": "X", "fromMe": "true"})
    assert bad.status_code == 400 and bad.json()["field"] == "fromMe"

    def keys_of(message_id: str) -> list[dict[str, Any]]:
        return [
            c.json["key"]
            for c in stub.calls_to("sendReaction")
            if c.json["key"]["id"] == message_id
        ]

    await wait_for(lambda: len(keys_of("OWN1")) >= 2 and len(keys_of("THEIRS1")) >= 2, timeout=30)
    status = (await cp.get("/process/status")).json()
    assert {s["messageId"]: s["fromMe"] for s in status["activeSessions"]} == {
        "OWN1": True,
        "THEIRS1": False,
    }
    finished = await cp.post(
        "/process/finish",
        json={**{k: own[k] for k in ("instance", "chatId", "messageId")}, "status": "success"},
    )
    assert finished.status_code in (200, 201), (
        finished.text,
        [(c.json, c.status) for c in stub.calls_to("sendReaction")][-4:],
    )
    assert all(
        k == {"remoteJid": own["chatId"], "fromMe": True, "id": "OWN1"} for k in keys_of("OWN1")
    )
    own_calls = [c for c in stub.calls_to("sendReaction") if c.json["key"]["id"] == "OWN1"]
    assert own_calls[-1].json["reaction"] == "✅"
    assert all(k["fromMe"] is False for k in keys_of("THEIRS1"))
