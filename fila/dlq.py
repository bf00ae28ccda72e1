"""Browse and replay dead letters (delivery, ingest, monitoring), for the CLI and the control plane.

A dead letter says why it died in Fila's headers, or, when RabbitMQ dead-lettered it itself
(the 1 h TTL on global.messages), in `x-death`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from fila.deadletters import DeadLetter, ReplayResult
from fila.redelivery import fresh_headers, republished
from fila.topology import (
    GLOBAL_DLQ,
    GLOBAL_QUEUE,
    H_ATTEMPTS,
    H_FAILED_AT,
    H_REASON,
    H_RESPONSE,
    H_STAGE,
    H_STATUS,
    publish_confirmed,
    queue_depth,
)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return str(value)


def _int(value: Any) -> int | None:
    try:
        return int(_text(value) or "")
    except ValueError:
        return None


def _body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw.decode(errors="replace")


def _expiry(headers: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The `x-death` entry that explains the death: its own queue's, else the latest."""
    deaths = headers.get("x-death")
    if not isinstance(deaths, list) or not deaths:
        return None
    for entry in deaths:
        if isinstance(entry, Mapping) and _text(entry.get("queue")) == GLOBAL_QUEUE:
            return entry
    first = deaths[0]
    return first if isinstance(first, Mapping) else None


def describe(message: AbstractIncomingMessage, queue: str) -> DeadLetter:
    """Read a dead letter's story from its headers and body."""
    headers: Mapping[str, Any] = message.headers or {}
    body = _body(message.body)
    death = _expiry(headers)
    reason = _text(headers.get(H_REASON))
    failed_at = _text(headers.get(H_FAILED_AT))
    if reason is None:
        reason = _text(death.get("reason")) if death else None
        if failed_at is None and death:
            failed_at = _text(death.get("time"))
    stage = _text(headers.get(H_STAGE)) or ("delivery" if queue == GLOBAL_DLQ else "ingest")
    instance = body.get("instance") if isinstance(body, dict) else None
    return DeadLetter(
        id=message.message_id or "",
        queue=queue,
        stage=stage,
        reason=reason or "unknown",
        attempts=_int(headers.get(H_ATTEMPTS)) or 0,
        statusCode=_int(headers.get(H_STATUS)),
        response=_text(headers.get(H_RESPONSE)),
        failedAt=failed_at,
        instance=instance if isinstance(instance, str) else None,
        body=body,
    )


def _matches(letter: DeadLetter, instance: str | None, reason: str | None) -> bool:
    if instance is not None and letter.instance != instance:
        return False
    return reason is None or reason.lower() in letter.reason.lower()


async def _take(
    channel: AbstractChannel,
    queue: str,
    instance: str | None,
    reason: str | None,
    limit: int | None,
) -> tuple[list[tuple[AbstractIncomingMessage, DeadLetter]], list[AbstractIncomingMessage], bool]:
    """Hold (unacked) the queue's messages until `limit` match: (matching, others, at end)."""
    source = await channel.declare_queue(queue, passive=True)
    matching: list[tuple[AbstractIncomingMessage, DeadLetter]] = []
    others: list[AbstractIncomingMessage] = []
    at_end = False
    try:
        # Held messages are not redelivered to us, so this stops at the queue's end.
        while limit is None or len(matching) < limit:
            message = await source.get(no_ack=False, fail=False)
            if message is None:
                at_end = True
                break
            letter = describe(message, queue)
            if _matches(letter, instance, reason):
                matching.append((message, letter))
            else:
                others.append(message)
    except BaseException:
        await _give_back([m for m, _ in matching] + others)
        raise
    return matching, others, at_end


async def _give_back(messages: list[AbstractIncomingMessage]) -> None:
    """Requeue held messages; RabbitMQ puts them back in their original positions."""
    for message in messages:
        await message.nack(requeue=True)


async def browse(
    channel: AbstractChannel,
    queue: str,
    *,
    instance: str | None = None,
    reason: str | None = None,
    limit: int = 100,
) -> list[DeadLetter]:
    """Dead letters in queue order; non-destructive (every message stays where it was)."""
    matching, others, _ = await _take(channel, queue, instance, reason, limit)
    await _give_back([m for m, _ in matching] + others)
    return [letter for _, letter in matching]


async def replay(
    channel: AbstractChannel,
    queue: str,
    *,
    instance: str | None = None,
    reason: str | None = None,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    target: str | None = None,
) -> ReplayResult:
    """Move matching dead letters back to their work queue, same message id and priority.

    `target` defaults to global.messages for delivery dead letters; ingest dead letters go
    back to the ingest queue, which the caller names (settings.ingest_queue).
    """
    if target is None:
        if queue != GLOBAL_DLQ:
            raise ValueError(f"target: name the queue to replay {queue} into")
        target = GLOBAL_QUEUE
    matching, others, at_end = await _take(channel, queue, instance, reason, limit)
    done = 0
    try:
        if progress:
            progress(0, len(matching))
        for message, _letter in matching:
            await publish_confirmed(
                channel,
                republished(message, fresh_headers(message.headers or {})),
                target,
            )
            await message.ack()
            done += 1
            if progress:
                progress(done, len(matching))
    finally:
        # Messages never scanned (counted while ours are still held) plus the ones given back.
        unscanned = 0
        if not at_end:
            unscanned = await queue_depth(channel, queue)
        held = [m for m, _ in matching[done:]] + others
        await _give_back(held)
    return ReplayResult(replayed=done, remaining=unscanned + len(held))
