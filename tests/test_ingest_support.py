"""Helpers for the ingest tests: Evolution-shaped events, publishing, reading what came out."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import msgspec
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from fila import mediacrypto, s3, topology
from fila.keys import Keys
from fila.settings import Settings
from simulator.evolution import EvolutionStub


def audio_event(
    instance: str,
    message_id: str,
    seconds: Any = 10,
    *,
    data: bytes | None = None,
    mimetype: str = "audio/ogg; codecs=opus",
    audio: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `messages.upsert` event as Evolution API publishes it (base64 only when `data`)."""
    audio_message: dict[str, Any] = {
        "mimetype": mimetype,
        "seconds": seconds,
        "ptt": True,
        "fileLength": str(len(data or b"")),
        **(audio or {}),
    }
    message: dict[str, Any] = {"audioMessage": audio_message}
    if data is not None:
        message["base64"] = base64.b64encode(data).decode()
    return {
        "event": "messages.upsert",
        "instance": instance,
        "data": {
            "key": {"remoteJid": "5511999990000@s.whatsapp.net", "fromMe": False, "id": message_id},
            "pushName": "Tester",
            "message": message,
            "messageType": "audioMessage",
            "messageTimestamp": 1764000000,
        },
        "server_url": "http://evolution.test",
        "date_time": "2026-11-25T09:00:00.000Z",
        "sender": "5511888880000@s.whatsapp.net",
        "apikey": "instance-key",
    }


def enc_event(
    stub: EvolutionStub,
    instance: str,
    message_id: str,
    plain: bytes,
    seconds: int = 20,
    *,
    tamper: bool = False,
    key: bytes = b"",
    direct_path: bool = True,
) -> dict[str, Any]:
    """An event whose audio is only reachable as a WhatsApp `.enc` on the stub's CDN (no
    base64, no API media): its bytes flipped when `tamper`, announced with `key` when given."""
    media_key = mediacrypto.new_media_key()
    media = mediacrypto.encrypt(plain, media_key)
    blob = bytearray(media.enc)
    if tamper:
        blob[len(blob) // 2] ^= 0x40
    b64 = base64.b64encode
    audio = {
        "url": stub.add_blob(f"{message_id}.enc", bytes(blob)),
        "mediaKey": b64(key or media_key).decode(),
        "fileSha256": b64(media.fileSha256).decode(),
        "fileEncSha256": b64(media.fileEncSha256).decode(),
    }
    if direct_path:
        audio["directPath"] = f"/v/{message_id}.enc"
    return audio_event(instance, message_id, seconds, audio=audio)


def text_event(instance: str, message_id: str) -> dict[str, Any]:
    event = audio_event(instance, message_id)
    event["data"]["message"] = {"conversation": "hello"}
    event["data"]["messageType"] = "conversation"
    return event


def noise(size: int) -> bytes:
    return os.urandom(size)


class Rabbit:
    """A test's own connection to its vhost, with the topology the workers expect."""

    def __init__(self, settings: Settings, channel: AbstractChannel) -> None:
        self.settings = settings
        self.channel = channel

    async def publish(self, event: dict[str, Any] | bytes) -> None:
        body = event if isinstance(event, bytes) else msgspec.json.encode(event)
        exchange = await self.channel.get_exchange(self.settings.evolution_exchange)
        await exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=self.settings.evolution_routing_key,
        )

    async def drain(self, queue: str) -> list[AbstractIncomingMessage]:
        """Take every ready message off `queue` (acked)."""
        q = await self.channel.get_queue(queue, ensure=False)
        out: list[AbstractIncomingMessage] = []
        while True:
            message = await q.get(no_ack=True, fail=False)
            if message is None:
                return out
            out.append(message)

    async def depth(self, queue: str) -> int:
        return await topology.queue_depth(self.channel, queue)


@asynccontextmanager
async def rabbit(settings: Settings) -> AsyncIterator[Rabbit]:
    connection = await aio_pika.connect(settings.rabbitmq_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare_all(channel, settings)
        yield Rabbit(settings, channel)
    finally:
        await connection.close()


@asynccontextmanager
async def s3_client(settings: Settings) -> AsyncIterator[Any]:
    async with s3.client(settings) as client:
        yield client


async def s3_objects(settings: Settings) -> dict[str, Any]:
    async with s3_client(settings) as s3:
        listed = await s3.list_objects_v2(Bucket=settings.s3_bucket)
        return {o["Key"]: o for o in listed.get("Contents", [])}


async def s3_get(settings: Settings, key: str) -> tuple[bytes, str]:
    async with s3_client(settings) as s3:
        obj = await s3.get_object(Bucket=settings.s3_bucket, Key=key)
        return await obj["Body"].read(), obj["ContentType"]


async def counters(redis: Any, keys: Keys, instance: str | None = None) -> dict[str, int]:
    key = keys.stats_instance(instance) if instance else keys.stats_global
    raw = await redis.hgetall(key)
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}


async def workers(redis: Any, keys: Keys) -> list[dict[str, Any]]:
    """WorkerInfo of every live worker, as dicts."""
    ids = await redis.zrange(keys.workers, 0, -1)
    out = []
    for worker_id in ids:
        name = worker_id.decode() if isinstance(worker_id, bytes) else worker_id
        raw = await redis.get(keys.worker(name))
        if raw:
            out.append(msgspec.json.decode(raw))
    return out
