"""Audio to S3 straight from memory: one aioboto3 client for the worker's life.

Small files go in one put_object; above the threshold a multipart upload, so a large voice
note never needs a second full copy in flight.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any
from urllib.parse import quote

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from fila import logging as flog
from fila import s3
from fila.settings import Settings
from workers.ingesterrors import IngestError

log = flog.get("ingest.storage")

_EXTENSIONS = {
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mp4": "m4a",
    "audio/m4a": "m4a",
    "audio/x-m4a": "m4a",
    "audio/aac": "aac",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
}
MIN_PART = 5 * 1024 * 1024
"""S3 refuses multipart parts below 5 MiB (except the last)."""


def extension(mimetype: str) -> str:
    base = mimetype.split(";", 1)[0].strip().lower()
    return _EXTENSIONS.get(base, "bin")


def object_key(instance: str, mimetype: str, now_ms: int | None = None) -> str:
    """The contract's `audio_<epoch ms>_<instance>.<ext>` (cleanup parses the epoch back)."""
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    return f"audio_{stamp}_{instance}.{extension(mimetype)}"


class AudioStore:
    """Upload and address audio objects in the configured bucket."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._signer: Any = None
        self._objects: s3.BucketObjects | None = None
        self._urls: s3.BucketObjects | None = None

    async def open(self) -> None:
        settings = self._settings
        self._client = await self._stack.enter_async_context(
            self._new_client(settings.s3_endpoint_url)
        )
        self._signer = self._client
        public = settings.s3_public_endpoint_url
        if public and public != settings.s3_endpoint_url:
            # Presigning is offline: a client set to the public host signs for that host.
            self._signer = await self._stack.enter_async_context(self._new_client(public))
        s3.cache_endpoints(self._client)
        s3.put_without_continue(self._client)
        if self._signer is not self._client:
            s3.cache_endpoints(self._signer)
        # The hot path's PUTs and URLs without the client's per-call work (None: the client's).
        self._objects = await s3.BucketObjects.of(self._client, settings.s3_bucket)
        if settings.s3_url_mode == "presigned":
            self._urls = (
                self._objects
                if self._signer is self._client
                else await s3.BucketObjects.of(self._signer, settings.s3_bucket)
            )

    def _new_client(self, endpoint_url: str) -> Any:
        config = Config(
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            max_pool_connections=max(10, self._settings.ingest_concurrency),
        )
        return s3.client(self._settings, endpoint_url=endpoint_url, config=config)

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = self._signer = self._objects = self._urls = None

    async def upload(self, key: str, data: bytes, mimetype: str) -> None:
        """Store `data` at `key`; S3 trouble is transient (the event is retried later)."""
        bucket = self._settings.s3_bucket
        try:
            if len(data) >= self._settings.s3_multipart_threshold:
                await self._multipart(bucket, key, data, mimetype)
            elif self._objects is not None:
                await self._objects.put(key, data, mimetype)
            else:
                await self._client.put_object(
                    Bucket=bucket, Key=key, Body=data, ContentType=mimetype
                )
        except (ClientError, BotoCoreError, OSError) as exc:
            detail = f"{type(exc).__name__}: {exc}"
            raise IngestError("s3_unavailable", detail, transient=True, dependency="s3") from exc

    async def probe(self) -> None:
        """Raises while the bucket cannot be reached (a dependency hold's check)."""
        await self._client.head_bucket(Bucket=self._settings.s3_bucket)

    async def _multipart(self, bucket: str, key: str, data: bytes, mimetype: str) -> None:
        part_size = max(self._settings.s3_multipart_threshold, MIN_PART)
        created = await self._client.create_multipart_upload(
            Bucket=bucket, Key=key, ContentType=mimetype
        )
        upload_id = created["UploadId"]
        view = memoryview(data)
        parts = []
        try:
            for number, start in enumerate(range(0, len(data), part_size), start=1):
                result = await self._client.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=bytes(view[start : start + part_size]),
                )
                parts.append({"ETag": result["ETag"], "PartNumber": number})
            await self._client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self._client.abort_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id
                )
            raise
        log.debug("multipart upload", key=key, parts=len(parts))

    async def url_for(self, key: str) -> str:
        """Public or presigned GET URL, per `s3_url_mode`, on the host receivers can reach."""
        settings = self._settings
        if settings.s3_url_mode == "presigned":
            if self._urls is not None:
                return await self._urls.url(key, settings.s3_presign_seconds)
            url: str = await self._signer.generate_presigned_url(
                "get_object",
                Params={"Bucket": settings.s3_bucket, "Key": key},
                ExpiresIn=settings.s3_presign_seconds,
            )
            return url
        endpoint = settings.s3_public_endpoint_url or settings.s3_endpoint_url
        base = settings.s3_public_base_url or (
            f"{(endpoint or 'https://s3.amazonaws.com').rstrip('/')}/{settings.s3_bucket}"
        )
        return f"{base.rstrip('/')}/{quote(key)}"
