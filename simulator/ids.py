"""Simulated WhatsApp message ids that carry their send time, so any hop can measure latency."""

from __future__ import annotations

import itertools
import os
import time

PREFIX = "F11A"
_counter = itertools.count()
_salt = os.getpid() & 0xFFFF


def message_id(sent_at: float | None = None) -> str:
    """A 28-hex-char id: prefix, epoch ms, process salt, sequence (unique per process)."""
    ms = int((time.time() if sent_at is None else sent_at) * 1000)
    return f"{PREFIX}{ms:012X}{_salt:04X}{next(_counter) & 0xFFFFFFFF:08X}"


def sent_at_ms(message_id: str) -> float | None:
    """The epoch ms a simulated id was made at, or None for ids from elsewhere."""
    if len(message_id) != 28 or not message_id.startswith(PREFIX):
        return None
    try:
        return float(int(message_id[4:16], 16))
    except ValueError:
        return None
