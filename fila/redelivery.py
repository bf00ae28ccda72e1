"""A message put back on a queue: another try through a delay queue, a dead letter, or a replay.

Each starts from the message's headers without the story of an earlier death, then adds its own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from fila.topology import H_ATTEMPTS, H_FAILED_AT, H_REASON, H_RESPONSE, H_STAGE, H_STATUS

DEATH_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason")
"""Set by RabbitMQ; dropped on republish so a retried message is never taken for a DL cycle."""
LAST_DEATH_HEADERS = ("x-last-death-exchange", "x-last-death-queue", "x-last-death-reason")
FILA_DEAD_HEADERS = (H_REASON, H_STAGE, H_ATTEMPTS, H_STATUS, H_RESPONSE, H_FAILED_AT)


def fresh_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """Headers without the story of a previous death (republished messages start clean)."""
    dropped = {*DEATH_HEADERS, *LAST_DEATH_HEADERS, *FILA_DEAD_HEADERS}
    return {k: v for k, v in headers.items() if k not in dropped}


def republished(message: AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
    """The same message (body, id, priority, timestamp) under new headers, persistent."""
    return aio_pika.Message(
        message.body,
        message_id=message.message_id,
        priority=message.priority,
        content_type=message.content_type or "application/json",
        headers=headers,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        timestamp=message.timestamp,
    )


def retry_headers(
    message: AbstractIncomingMessage, attempts: int, status: int | None
) -> dict[str, Any]:
    """Headers for another round: the count so far and the target's last answer."""
    headers = fresh_headers(message.headers or {})
    headers[H_ATTEMPTS] = attempts
    if status is not None:
        headers[H_STATUS] = status
    return headers


def dead_headers(
    message: AbstractIncomingMessage,
    *,
    reason: str,
    stage: str,
    attempts: int,
    status: int | None,
    response: str | None,
) -> dict[str, Any]:
    """The story a dead letter carries: why, where, after how many tries, what the target said."""
    headers = fresh_headers(message.headers or {})
    headers[H_REASON] = reason
    headers[H_STAGE] = stage
    headers[H_ATTEMPTS] = attempts
    headers[H_FAILED_AT] = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    if status is not None:
        headers[H_STATUS] = status
    if response:
        headers[H_RESPONSE] = response[:500]
    return headers
