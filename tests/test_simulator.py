"""The simulator against a real RabbitMQ exchange and a real media CDN."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import aio_pika
import httpx
import msgspec

from fila import mediacrypto
from fila.models import EvolutionEvent
from fila.settings import Settings
from simulator import audio
from simulator.benchenv import free_port
from simulator.events import CATEGORIES, VOICE
from simulator.evolution import EvolutionStub
from simulator.simulate import Simulator
from tests.support import Proc, wait_for


async def _bound_queue(
    settings: Settings, name: str
) -> tuple[aio_pika.abc.AbstractRobustConnection, aio_pika.abc.AbstractQueue]:
    connection = await aio_pika.connect_robust(settings.rabbitmq_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        settings.evolution_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(name, durable=True)
    await queue.bind(exchange, routing_key=settings.evolution_routing_key)
    return connection, queue


async def _drain(
    queue: aio_pika.abc.AbstractQueue, n: int
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    got: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def take() -> bool:
        while (message := await queue.get(fail=False)) is not None:
            await message.ack()
            got.append(message)
        return len(got) >= n

    await wait_for(take, timeout=60, interval=0.2)
    return got


def _classify(body: bytes) -> str:
    """What the bytes on the wire say they are, independent of the simulator's own labels."""
    try:
        event = msgspec.json.decode(body, type=EvolutionEvent)
        audio_part = event.audio()
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "malformed"
    if audio_part is None:
        return "non_audio"
    assert audio_part.seconds is not None
    if audio_part.seconds < 3:
        return "too_short"
    if audio_part.seconds > 7200:
        return "too_long"
    return "voice"


async def test_simulator_publishes_every_category_and_the_summary_reconciles(
    settings: Settings,
) -> None:
    connection, queue = await _bound_queue(settings, "sim-readback")
    try:
        async with EvolutionStub(api_key="evo-key") as stub:
            sim = Simulator(settings, stub, instances=500, rate=9000, duration=2.0, seed=7)
            summary = await sim.run()
            assert summary.sent == summary.planned == 300 and summary.failed == 0
            assert set(summary.byCategory) == set(CATEGORIES)
            assert all(summary.byCategory[c] > 0 for c in CATEGORIES), summary.byCategory
            assert sum(summary.byCategory.values()) == 300
            assert sum(summary.byInstance.values()) == 300
            assert summary.voice_ok > summary.sent / 2  # mostly voice notes

            messages = await _drain(queue, summary.sent)
            assert len(messages) == summary.sent  # nothing extra arrives
            seen = Counter(_classify(m.body) for m in messages)
            assert seen["voice"] == summary.voice_ok
            for category in ("too_short", "too_long", "non_audio", "malformed"):
                assert seen[category] == summary.byCategory[category], category
            assert all(m.routing_key == settings.evolution_routing_key for m in messages)

            by_id = {b.message_id: b for b in sim.sent}
            checked = Counter[str]()
            async with httpx.AsyncClient() as client:
                for message in messages:
                    if _classify(message.body) != "voice":
                        continue
                    event = msgspec.json.decode(message.body, type=EvolutionEvent)
                    built = by_id[event.data.key.id]
                    assert event.instance == built.instance and event.event == "messages.upsert"
                    part = event.audio()
                    assert part is not None and part.url and part.mediaKey
                    enc = (await client.get(part.url)).content
                    plain = mediacrypto.decrypt(
                        enc,
                        base64.b64decode(part.mediaKey),
                        file_sha256=base64.b64decode(part.fileSha256 or ""),
                        file_enc_sha256=base64.b64decode(part.fileEncSha256 or ""),
                    )
                    assert plain.startswith(b"OggS") and int(part.fileLength) == len(plain)
                    assert audio.duration_of(plain) == min(part.seconds or 0, 30)
                    if built.category == "voice_base64":
                        assert base64.b64decode(event.base64() or "") == plain
                    else:
                        assert event.base64() is None
                    if built.category == "voice_getbase64":
                        answer = await client.post(
                            f"{stub.url}/chat/getBase64FromMediaMessage/{event.instance}",
                            json={"message": {"key": {"id": event.data.key.id}}},
                            headers={"apikey": "evo-key"},
                        )
                        assert base64.b64decode(answer.json()["base64"]) == plain
                    checked[built.category] += 1
            assert sum(checked.values()) == summary.voice_ok
            assert all(checked[c] > 0 for c in VOICE)
    finally:
        await connection.close()


async def test_simulate_command_prints_and_writes_its_summary(
    settings: Settings, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    connection, queue = await _bound_queue(settings, "sim-cli-readback")
    try:
        out = tmp_path / "summary.json"
        proc = spawn(
            [
                "simulate",
                "--instances",
                "20",
                "--rate",
                "1200",
                "--duration",
                "2",
                "--stub-port",
                "0",
                "--linger",
                "0",
                "--seed",
                "3",
                "--json",
                str(out),
            ],
            settings,
        )
        await wait_for(lambda: proc.popen.poll() is not None, timeout=90, interval=0.2)
        assert proc.popen.returncode == 0, proc.output()
        summary = json.loads(out.read_text())
        assert summary["sent"] == summary["planned"] == 40
        assert "voice notes to deliver" in proc.output()
        messages = await _drain(queue, 40)
        assert len(messages) == 40
        instances = {
            msgspec.json.decode(m.body).get("instance")
            for m in messages
            if _classify(m.body) != "malformed"
        }
        assert instances <= {f"sim-{n:03d}" for n in range(1, 21)}
        assert summary["byInstance"] and set(summary["byInstance"]) <= {
            f"sim-{n:03d}" for n in range(1, 21)
        }
    finally:
        await connection.close()


async def test_simulate_command_rejects_a_bad_option(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    proc = spawn(["simulate", "--rate", "0"], settings)
    await wait_for(lambda: proc.popen.poll() is not None, timeout=60, interval=0.2)
    assert proc.popen.returncode == 2
    assert "Traceback" not in proc.output() and "--rate" in proc.output()


async def test_simulator_posts_to_the_control_plane_webhook(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    port = free_port()
    cp_settings = settings.replace(http_port=port, server_url=f"http://127.0.0.1:{port}")
    proc = spawn(["controlplane"], cp_settings)
    base = f"http://127.0.0.1:{port}"

    async def healthy() -> bool:
        assert proc.popen.poll() is None, proc.output()[-3000:]
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(f"{base}/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_for(healthy, timeout=90, interval=0.3)
    async with EvolutionStub(api_key="evo-key") as stub:
        sim = Simulator(
            cp_settings,
            stub,
            instances=50,
            rate=6000,
            duration=1.0,
            seed=11,
            http_url=f"{base}/webhook/evolution",
        )
        summary = await sim.run()
    assert summary.failed == 0, summary.firstError
    accepted, refused = summary.httpStatus.get("202", 0), summary.httpStatus.get("400", 0)
    assert accepted + refused == summary.sent == 100
    malformed = summary.byCategory["malformed"]
    assert refused <= malformed and accepted >= summary.sent - malformed

    connection = await aio_pika.connect_robust(settings.rabbitmq_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(settings.ingest_queue, passive=True)
        messages = await _drain(queue, accepted)
        assert len(messages) == accepted
        ids = {m.message_id for m in messages}
        voice = {f"{b.instance}:{b.message_id}" for b in sim.sent if b.category != "malformed"}
        assert voice <= ids
    finally:
        await connection.close()
