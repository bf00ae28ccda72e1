"""Voice notes' PUTs, signed by botocore's signer and sent on the client's own pool: what S3
stores, what is retried, what is not."""

from __future__ import annotations

import base64
import os
import uuid
import zlib
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from fila.dev import services
from fila.settings import Settings
from tests.faults import TcpProxy
from workers.ingesterrors import IngestError
from workers.storage import AudioStore


def _answer(status: str, code: str) -> bytes:
    body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{code}!</Message></Error>"
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


async def _get(settings: Settings, key: str) -> dict[str, object]:
    async with services.s3_client(settings) as client:
        got = await client.get_object(Bucket=settings.s3_bucket, Key=key, ChecksumMode="ENABLED")
        return {**got, "Body": await got["Body"].read()}


async def test_a_put_stores_the_body_its_type_and_its_crc32(settings: Settings) -> None:
    data = os.urandom(40_000)
    key = f"audio_{uuid.uuid4().hex}_inst com espaço.ogg"
    store = AudioStore(settings)
    await store.open()
    try:
        assert store._objects is not None  # the signed PUT, not the client's put_object
        await store.upload(key, data, "audio/ogg; codecs=opus")
    finally:
        await store.close()
    got = await _get(settings, key)
    assert got["Body"] == data
    assert got["ContentType"] == "audio/ogg; codecs=opus"
    assert got["ChecksumCRC32"] == base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


async def test_a_slow_down_is_retried_and_a_refusal_is_not(settings: Settings) -> None:
    target = urlsplit(settings.s3_endpoint_url)
    assert target.hostname and target.port
    proxy = TcpProxy(target.hostname, target.port)
    await proxy.start()
    through = settings.replace(s3_endpoint_url=f"http://{proxy.url_host}")
    try:
        proxy.canned = [_answer("503 Slow Down", "SlowDown")]
        store = AudioStore(through)
        await store.open()
        try:
            await store.upload("audio_1_slow.ogg", b"voice after a slow down", "audio/ogg")
        finally:
            await store.close()
        assert proxy.canned == []
        assert (await _get(settings, "audio_1_slow.ogg"))["Body"] == b"voice after a slow down"

        refused = _answer("403 Forbidden", "AccessDenied")
        proxy.canned = [refused, refused]
        store = AudioStore(through)
        await store.open()
        try:
            with pytest.raises(IngestError) as caught:
                await store.upload("audio_2_refused.ogg", b"never stored", "audio/ogg")
        finally:
            await store.close()
        assert proxy.canned == [refused]  # asked once: a refusal is not retried
        assert caught.value.reason == "s3_unavailable" and "AccessDenied" in caught.value.detail
        with pytest.raises(ClientError):
            await _get(settings, "audio_2_refused.ogg")
    finally:
        await proxy.close()
