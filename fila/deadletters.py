"""Dead letters as operators see them: what the control plane answers and the TUI and CLI show.

Plain structs, so a reader of dead letters needs no AMQP client; browsing and replaying them
is `fila.dlq`.
"""

from __future__ import annotations

from typing import Any

import msgspec


class DeadLetter(msgspec.Struct, kw_only=True):
    """One message in a dead-letter queue, as operators see it."""

    id: str
    queue: str
    stage: str
    """"ingest" or "delivery"."""
    reason: str
    attempts: int
    statusCode: int | None
    response: str | None
    failedAt: str | None
    instance: str | None
    body: Any
    """Decoded JSON, or text when the body is not JSON."""


class ReplayResult(msgspec.Struct, kw_only=True):
    replayed: int
    remaining: int
