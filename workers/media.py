"""The audio bytes of an event, in memory, by the first source that has them.

Order: the event's own `base64`; Evolution API's getBase64FromMediaMessage (flaky by design, so
retried); the WhatsApp `.enc` download, decrypted and verified.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import quote

import httpx
import msgspec

from fila import logging as flog
from fila import mediacrypto
from fila.httpcalls import Answer, Calls
from fila.models import AudioMessage, EvolutionEvent
from fila.offload import off_loop
from fila.retries import first_then_retried
from fila.settings import Settings
from workers.ingesterrors import IngestError

log = flog.get("ingest.media")


_ENC_OVERHEAD = 16 + mediacrypto.MAC_LENGTH
_JSON_OVERHEAD = 64 * 1024
"""Room for getBase64's other fields around the base64 text."""

"""Padding plus MAC: an `.enc` of allowed audio is at most this much larger than the limit."""


class Media(msgspec.Struct, frozen=True):
    data: bytes
    mimetype: str
    source: str
    """base64 | evolution | download: where the bytes came from (for logs)."""


class _Transient(Exception):
    """An HTTP failure worth retrying (connection trouble, 408/429/5xx)."""


def _retryable_status(code: int) -> bool:
    return code in (408, 429) or code >= 500


def decode_base64(text: str, limit: int, field: str) -> bytes:
    """Strict base64 (a data: URL prefix allowed), refusing oversize before decoding it."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    text = "".join(text.split())
    if len(text) * 3 // 4 > limit + 3:
        raise IngestError("oversized", f"{field} holds more than {limit} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise IngestError("corrupt_base64", f"{field} is not valid base64") from exc
    if len(data) > limit:
        raise IngestError("oversized", f"{field} holds {len(data)} bytes (limit {limit})")
    if not data:
        raise IngestError("corrupt_base64", f"{field} is empty")
    return data


class MediaFetcher:
    """Fetches media with one shared HTTP client for the worker's life."""

    def __init__(self, settings: Settings, client: Calls) -> None:
        self._settings = settings
        self._client = client
        self.held_media: tuple[str, str] | None = None
        """(instance, message id) last refused by Evolution API: what a hold's probe asks for."""

    async def fetch(self, event: EvolutionEvent, audio: AudioMessage) -> Media:
        limit = self._settings.max_audio_bytes
        inline = event.base64()
        if inline is not None:
            data = await off_loop(len(inline), decode_base64, inline, limit, "message.base64")
            return Media(data=data, mimetype=audio.mimetype, source="base64")
        evolution_error: IngestError | None = None
        try:
            media = await self._from_evolution(event, audio)
        except IngestError as exc:
            if exc.reason == "oversized" or exc.reason == "corrupt_base64":
                raise
            evolution_error = exc
        else:
            if media is not None:
                return media
        if audio.url:
            try:
                return await self._download(audio)
            except IngestError as exc:
                if (
                    evolution_error
                    and evolution_error.transient
                    and exc.reason == "download_failed"
                ):
                    raise evolution_error from exc  # the CDN copy is gone: wait for the API
                raise
        if evolution_error is not None:
            raise evolution_error
        raise IngestError("media_unavailable", "no base64, Evolution API had none and no url")

    async def _from_evolution(self, event: EvolutionEvent, audio: AudioMessage) -> Media | None:
        """None when Evolution API says it has no such media (not worth retrying)."""
        url = (
            f"{self._settings.evolution_url.rstrip('/')}"
            f"/chat/getBase64FromMediaMessage/{quote(event.instance, safe='')}"
        )
        body = {"message": {"key": {"id": event.data.key.id}}}
        try:
            status, content = await self._post_retried(url, body)
        except _Transient as exc:
            self.held_media = (event.instance, event.data.key.id)
            raise IngestError(
                "evolution_unavailable", str(exc), transient=True, dependency="evolution"
            ) from exc
        if status >= 400:
            log.info("evolution has no media", status=status, id=event.data.key.id)
            return None
        try:
            payload = await off_loop(len(content), msgspec.json.decode, content)
        except ValueError as exc:
            raise IngestError("evolution_bad_response", "getBase64 answer is not JSON") from exc
        text = payload.get("base64") if isinstance(payload, dict) else None
        if not isinstance(text, str) or not text:
            return None
        limit = self._settings.max_audio_bytes
        data = await off_loop(len(text), decode_base64, text, limit, "getBase64 base64")
        mimetype = payload.get("mimetype") or audio.mimetype
        return Media(data=data, mimetype=str(mimetype), source="evolution")

    async def probe_evolution(self) -> None:
        """Raises while getBase64FromMediaMessage fails as a service (transport error, 5xx)."""
        instance, message_id = self.held_media or ("fila-probe", "fila-probe")
        url = (
            f"{self._settings.evolution_url.rstrip('/')}"
            f"/chat/getBase64FromMediaMessage/{quote(instance, safe='')}"
        )
        body = {"message": {"key": {"id": message_id}}}
        headers = {"apikey": self._settings.evolution_api_key}
        async with self._client.stream("POST", url, json=body, headers=headers) as response:
            if _retryable_status(response.status_code):
                raise _Transient(f"Evolution API answered {response.status_code}")

    async def _post_retried(self, url: str, body: object) -> tuple[int, bytes]:
        """The status and body (bounded by the audio limit as base64) of getBase64's answer."""
        headers = {"apikey": self._settings.evolution_api_key}
        limit = self._settings.max_audio_bytes * 4 // 3 + _JSON_OVERHEAD

        async def post() -> tuple[int, bytes]:
            try:
                async with self._client.stream("POST", url, json=body, headers=headers) as response:
                    status = response.status_code
                    if _retryable_status(status):
                        raise _Transient(f"Evolution API answered {status}")
                    content = b""
                    if status < 400:
                        content = await _read_capped(response, limit, "getBase64 answer")
            except httpx.TransportError as exc:
                raise _Transient(f"Evolution API unreachable: {type(exc).__name__}") from exc
            return status, content

        return await first_then_retried(
            post, on=_Transient, attempts=4, wait_initial=0.2, wait_max=2.0, timeout=30.0
        )

    async def _download(self, audio: AudioMessage) -> Media:
        assert audio.url is not None
        if not audio.mediaKey:
            raise IngestError("missing_field", "audioMessage.mediaKey is required to decrypt url")
        media_key = _b64_field(audio.mediaKey, "audioMessage.mediaKey") or b""
        file_sha = _b64_field(audio.fileSha256, "audioMessage.fileSha256")
        file_enc_sha = _b64_field(audio.fileEncSha256, "audioMessage.fileEncSha256")
        try:
            enc = await self._get_retried(audio.url)
        except _Transient as exc:
            raise IngestError("download_failed", str(exc), transient=True) from exc
        try:
            data = await off_loop(
                len(enc),
                mediacrypto.decrypt,
                enc,
                media_key,
                file_sha256=file_sha,
                file_enc_sha256=file_enc_sha,
            )
        except mediacrypto.MediaError as exc:
            raise IngestError(exc.reason, exc.detail) from exc
        if len(data) > self._settings.max_audio_bytes:
            limit = self._settings.max_audio_bytes
            raise IngestError("oversized", f"decrypted audio is {len(data)} bytes (limit {limit})")
        return Media(data=data, mimetype=audio.mimetype, source="download")

    async def _get_retried(self, url: str) -> bytes:
        limit = self._settings.max_audio_bytes + _ENC_OVERHEAD

        async def get() -> bytes:
            try:
                async with self._client.stream("GET", url, once=True) as response:
                    if _retryable_status(response.status_code):
                        raise _Transient(f"media download answered {response.status_code}")
                    if response.status_code >= 400:
                        raise IngestError(
                            "download_failed", f"media url answered {response.status_code}"
                        )
                    return await _read_capped(response, limit, "download")
            except httpx.TransportError as exc:
                raise _Transient(f"media url unreachable: {type(exc).__name__}") from exc

        return await first_then_retried(
            get, on=_Transient, attempts=3, wait_initial=0.2, wait_max=2.0, timeout=60.0
        )


async def _read_capped(response: Answer, limit: int, what: str) -> bytes:
    """The body, refused as soon as it passes `limit`: a huge answer never sits in memory."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise IngestError("oversized", f"{what} exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _b64_field(value: str | None, field: str) -> bytes | None:
    if value is None or value == "":
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise IngestError("corrupt_base64", f"{field} is not valid base64") from exc
