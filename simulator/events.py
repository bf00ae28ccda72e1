"""Evolution API v2 `messages.upsert` bodies for the simulator, one category at a time.

Each category is a case Fila must handle: voice notes reachable by each media route (inline
`base64`, getBase64FromMediaMessage, encrypted `.enc` download), durations outside the default
filter, other message types, and bodies that are broken.
"""

from __future__ import annotations

import base64
import random
import time
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from fila import mediacrypto
from simulator import audio
from simulator.evolution import EvolutionStub
from simulator.ids import message_id

Category = Literal[
    "voice_base64",
    "voice_getbase64",
    "voice_enc",
    "too_short",
    "too_long",
    "non_audio",
    "malformed",
]
VOICE: tuple[Category, ...] = ("voice_base64", "voice_getbase64", "voice_enc")
CATEGORIES: tuple[Category, ...] = (*VOICE, "too_short", "too_long", "non_audio", "malformed")

# Relative frequencies: mostly voice notes; a few malformed.
WEIGHTS: dict[Category, float] = {
    "voice_base64": 20,
    "voice_getbase64": 22,
    "voice_enc": 30,
    "too_short": 8,
    "too_long": 5,
    "non_audio": 12,
    "malformed": 3,
}
VOICE_ONLY: dict[Category, float] = {c: WEIGHTS[c] for c in VOICE}
"""Only deliverable voice notes, in the usual proportions of media routes (throughput runs)."""
MAX_PAYLOAD_SECONDS = 30
"""Longer notes carry this many seconds of bytes (the declared `seconds` stays as drawn)."""


class Built(msgspec.Struct, kw_only=True):
    category: Category
    instance: str
    message_id: str
    body: bytes
    seconds: int | None = None


def instance_name(n: int) -> str:
    return f"sim-{n:03d}"


class EventFactory:
    """Draws categories and builds bodies; media is registered on the stub it serves from."""

    def __init__(
        self,
        stub: EvolutionStub,
        *,
        server_url: str = "http://127.0.0.1:8080",
        rng: random.Random | None = None,
        weights: dict[Category, float] | None = None,
        max_voice_seconds: int = 90,
    ) -> None:
        self.stub = stub
        self.server_url = server_url
        self.rng = rng or random.Random()
        chosen = weights or WEIGHTS
        self._categories = [c for c in CATEGORIES if chosen.get(c, 0) > 0]
        self._weights = [chosen[c] for c in self._categories]
        self.max_voice_seconds = max(3, max_voice_seconds)

    def draw(self) -> Category:
        return self.rng.choices(self._categories, self._weights)[0]

    def build(self, category: Category, instance: str) -> Built:
        msg_id = message_id()
        if category == "non_audio":
            return Built(
                category=category,
                instance=instance,
                message_id=msg_id,
                body=msgspec.json.encode(self._non_audio(instance, msg_id)),
            )
        if category == "malformed":
            return Built(
                category=category,
                instance=instance,
                message_id=msg_id,
                body=self._malformed(instance, msg_id),
            )
        seconds = self._seconds(category)
        event = self._voice(category, instance, msg_id, seconds)
        return Built(
            category=category,
            instance=instance,
            message_id=msg_id,
            body=msgspec.json.encode(event),
            seconds=seconds,
        )

    # ------------------------------------------------------------------ pieces

    def _seconds(self, category: Category) -> int:
        if category == "too_short":
            return self.rng.randint(1, 2)
        if category == "too_long":
            return self.rng.randint(7201, 9000)
        # Voice notes are short mostly: a long-tailed draw within the default filter.
        drawn = int(self.rng.lognormvariate(2.4, 0.7))
        return min(self.max_voice_seconds, max(3, drawn))

    def _envelope(self, instance: str, msg_id: str, message: dict[str, Any], kind: str) -> Any:
        jid = f"55119{self.rng.randint(10_000_000, 99_999_999)}@s.whatsapp.net"
        now = time.time()
        return {
            "event": "messages.upsert",
            "instance": instance,
            "data": {
                "key": {"remoteJid": jid, "fromMe": False, "id": msg_id},
                "pushName": f"Contact {jid[5:9]}",
                "message": message,
                "messageType": kind,
                "messageTimestamp": int(now),
            },
            "server_url": self.server_url,
            "date_time": datetime.fromtimestamp(now, tz=UTC).isoformat(),
            "sender": f"551188{instance[-3:].rjust(6, '0')}@s.whatsapp.net",
            "apikey": f"{instance}-key",
        }

    def _voice(self, category: Category, instance: str, msg_id: str, seconds: int) -> Any:
        payload_seconds = min(seconds, MAX_PAYLOAD_SECONDS)
        if category in ("too_short", "too_long"):
            payload_seconds = min(payload_seconds, 3)
        plain = audio.voice_note(payload_seconds)
        media_key = mediacrypto.new_media_key()
        enc = mediacrypto.encrypt(plain, media_key)
        url = self.stub.add_blob(f"{msg_id}.enc", enc.enc)
        audio_message = {
            "url": url,
            "mimetype": audio.MIME,
            "fileSha256": _b64(enc.fileSha256),
            "fileLength": str(len(plain)),
            "seconds": seconds,
            "ptt": True,
            "mediaKey": _b64(media_key),
            "fileEncSha256": _b64(enc.fileEncSha256),
            "directPath": f"/v/t62.7117-24/{msg_id}.enc",
        }
        message: dict[str, Any] = {"audioMessage": audio_message}
        if category == "voice_base64":
            message["base64"] = _b64(plain)
        elif category == "voice_getbase64":
            self.stub.add_media(msg_id, plain, audio.MIME)
        return self._envelope(instance, msg_id, message, "audioMessage")

    def _non_audio(self, instance: str, msg_id: str) -> Any:
        pick = self.rng.random()
        if pick < 0.6:
            message: dict[str, Any] = {"conversation": "bom dia, tudo bem?"}
            kind = "conversation"
        elif pick < 0.85:
            message = {
                "imageMessage": {
                    "url": f"{self.stub.url}/media/{msg_id}.enc",
                    "mimetype": "image/jpeg",
                    "caption": "foto",
                    "fileLength": "48213",
                }
            }
            kind = "imageMessage"
        else:
            message = {"stickerMessage": {"mimetype": "image/webp", "fileLength": "9120"}}
            kind = "stickerMessage"
        return self._envelope(instance, msg_id, message, kind)

    def _malformed(self, instance: str, msg_id: str) -> bytes:
        pick = self.rng.randrange(3)
        if pick == 0:
            return (
                b'{"event": "messages.upsert", "instance": "' + instance.encode() + b'", "data": {'
            )
        if pick == 1:
            broken = self._envelope(
                instance, msg_id, {"audioMessage": {"seconds": 5}}, "audioMessage"
            )
            del broken["data"]["key"]
            return msgspec.json.encode(broken)
        bad = self._envelope(
            instance, msg_id, {"audioMessage": {"seconds": "soon"}}, "audioMessage"
        )
        return msgspec.json.encode(bad)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
