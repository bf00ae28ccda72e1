"""The production path's S3: the control plane makes its bucket, audio URLs name the public host."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import httpx
from botocore.exceptions import ClientError

from fila.dev import services
from fila.settings import Settings
from tests.faults import TcpProxy
from tests.support import Proc, wait_answering
from tests.test_controlplane_support import migrated, start_controlplane
from workers.storage import AudioStore

__all__ = ["migrated"]

AUDIO = b"OggS" + bytes(range(256)) * 40


async def _bucket_exists(settings: Settings) -> bool:
    async with services.s3_client(settings) as s3:
        try:
            await s3.head_bucket(Bucket=settings.s3_bucket)
        except ClientError:
            return False
    return True


async def test_a_control_plane_creates_its_missing_bucket(
    settings: Settings, migrated: Settings, spawn: Callable[..., Proc]
) -> None:
    """A fresh MinIO (compose) has no bucket: the control plane's start makes it, /readyz is 200."""
    fresh = settings.replace(s3_bucket=f"test-fresh-{uuid.uuid4().hex[:8]}")
    assert not await _bucket_exists(fresh)
    proc, base = start_controlplane(spawn, fresh)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            await wait_answering(client, "/readyz", popen=proc.popen, output=proc.output)
        assert await _bucket_exists(fresh)
        assert proc.terminate() == 0, proc.output()
    finally:
        await services.drop_bucket(fresh)


async def test_presigned_urls_name_the_public_endpoint_and_serve_the_audio(
    settings: Settings,
) -> None:
    """S3 reached by workers at one address, by receivers at another (a forwarding port)."""
    target = urlsplit(settings.s3_endpoint_url)
    assert target.hostname and target.port
    proxy = TcpProxy(target.hostname, target.port)
    await proxy.start()
    public = settings.replace(s3_public_endpoint_url=f"http://{proxy.url_host}")
    store = AudioStore(public)
    await store.open()
    try:
        await store.upload("audio_1_inst.ogg", AUDIO, "audio/ogg")
        url = await store.url_for("audio_1_inst.ogg")
        assert urlsplit(url).netloc == proxy.url_host, url
        assert target.netloc not in url
        # Signature V4 in the default region too (botocore would presign there with V2).
        assert public.s3_region == "us-east-1"
        query = dict(parse_qsl(urlsplit(url).query))
        assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256", url
        assert query["X-Amz-Expires"] == str(public.s3_presign_seconds)
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.get(url)
        assert response.status_code == 200, response.text
        assert response.content == AUDIO
    finally:
        await store.close()
        await proxy.close()


async def test_without_a_public_endpoint_urls_name_the_s3_endpoint(settings: Settings) -> None:
    store = AudioStore(settings)
    await store.open()
    try:
        url = await store.url_for("audio_1_inst.ogg")
    finally:
        await store.close()
    assert urlsplit(url).netloc == urlsplit(settings.s3_endpoint_url).netloc


async def test_public_urls_name_the_public_endpoint(settings: Settings) -> None:
    """Public mode (a public-read bucket): endpoint/bucket/key on the public host."""
    public = settings.replace(s3_url_mode="public", s3_public_endpoint_url="https://s3.example.com")
    store = AudioStore(public)
    await store.open()
    try:
        url = await store.url_for("audio_1_inst.ogg")
        cdn = await AudioStore(
            public.replace(s3_public_base_url="https://cdn.example.com/a/")
        ).url_for("audio_1_inst.ogg")
    finally:
        await store.close()
    assert url == f"https://s3.example.com/{settings.s3_bucket}/audio_1_inst.ogg"
    assert cdn == "https://cdn.example.com/a/audio_1_inst.ogg"
