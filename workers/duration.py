"""The length of a voice note read from its bytes (mutagen), for events that carry no `seconds`.

The audio stays in memory (a file-like view of the bytes); callers run this off the event loop,
as parsing a few MB of MP3 frames is CPU work.
"""

from __future__ import annotations

import io
import math

import mutagen
from mutagen.aac import AAC
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4
from mutagen.oggopus import OggOpus

_HINTS: tuple[tuple[tuple[str, ...], type[mutagen.FileType]], ...] = (
    (("opus", "ogg"), OggOpus),
    (("mp4", "m4a", "aac-lc", "x-m4a", "quicktime"), MP4),
    (("mpeg", "mp3", "mpga"), MP3),
    (("aac", "adts"), AAC),
)
"""Formats mutagen cannot always tell from the first bytes (ADTS AAC, MP3 without ID3):
tried first when the mimetype names them."""


class UnreadableDuration(ValueError):
    """No format mutagen knows yields a positive, finite length for these bytes."""


def _hinted(mimetype: str) -> list[type[mutagen.FileType]]:
    kind = mimetype.lower()
    return [cls for words, cls in _HINTS if any(word in kind for word in words)]


def _length(opened: mutagen.FileType | None) -> float | None:
    info = getattr(opened, "info", None)
    length = getattr(info, "length", None)
    if isinstance(length, int | float) and math.isfinite(length) and length > 0:
        return float(length)
    return None


def audio_seconds(data: bytes, mimetype: str) -> float:
    """Seconds of audio in `data`: the mimetype's format first, then mutagen's own guess."""
    problems: list[str] = []
    for cls in [*_hinted(mimetype), None]:
        try:
            opened = mutagen.File(io.BytesIO(data)) if cls is None else cls(io.BytesIO(data))
        except Exception as exc:  # a parser fed untrusted bytes: any failure means unreadable
            problems.append(f"{cls.__name__ if cls else 'auto'}: {type(exc).__name__}")
            continue
        length = _length(opened)
        if length is not None:
            return length
        problems.append(f"{cls.__name__ if cls else 'auto'}: no length")
    raise UnreadableDuration(
        f"no duration in {len(data)} bytes of {mimetype!r} ({'; '.join(problems)})"
    )


def whole_seconds(length: float) -> int:
    """WhatsApp's `seconds` is whole; a note of 0.4 s still counts as 1 s of audio."""
    return max(1, round(length))
