"""The five ingest steps for one event: filter, token bucket, media, S3, global.messages.

Every outcome is decided (and every publish confirmed) here before the caller acks, so an
event is either queued, counted as filtered, refused, held for later, or dead-lettered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, Literal

import redis.asyncio as aioredis

from fila import logging as flog
from fila import stats, topology
from fila.events import EventError, audio_of, parse_event
from fila.keys import Keys
from fila.models import AudioMessage, EvolutionEvent, MonitoringEvent, QueuedAudio, encode
from fila.offload import off_loop
from fila.ratelimit import TokenBucket, priority_of
from fila.settings import Settings
from workers.duration import UnreadableDuration, audio_seconds, whole_seconds
from workers.enqueue import (
    H_ADMITTED,
    H_DEFERRALS,
    H_RECEIVED_AT,
    Publisher,
    defer_delay_ms,
    header_float,
    header_int,
    retry_delay_ms,
)
from workers.filtercache import ConfigCache
from workers.holds import H_HELD, Holds, redis_down
from workers.ingesterrors import IngestError
from workers.media import Media, MediaFetcher
from workers.objectnames import ObjectNames
from workers.outcomes import queue_error, tries_so_far
from workers.storage import AudioStore

log = flog.get("ingest")

_BROKER_HEADERS = ("x-death", "x-first-death", "x-last-death")
"""Set by RabbitMQ when a delay queue hands an event back; not carried onto what we publish."""
_HELD_DELAY_MS = 1000
"""An event returned during a hold waits this long, then sits in the ingest queue unconsumed."""
_MAX_PENDING_MONITORING = 1000
"""Unsent queue.error events kept in memory; beyond that they are dropped, never awaited."""

Filtered = Literal["tooShort", "tooLong"]
Outcome = Literal[
    "queued",
    "tooShort",
    "tooLong",
    "nonAudio",
    "duplicate",
    "rateLimited",
    "deferred",
    "retry",
    "deadLettered",
    "held",
]


class Pipeline:
    """One instance per worker process, shared by its concurrent handlers."""

    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        publisher: Publisher,
        config: ConfigCache,
        fetcher: MediaFetcher,
        store: AudioStore,
        holds: Holds | None = None,
    ) -> None:
        self.settings = settings
        self.holds = holds
        self.redis = redis
        self.keys = Keys(settings.redis_prefix)
        self.counters = stats.Counters(
            redis, self.keys, settings.timezone, settings.fleet_stats_retention_days
        )
        self.bucket = TokenBucket(redis, self.keys)
        self.publisher = publisher
        self.config = config
        self.fetcher = fetcher
        self.store = store
        self.names = ObjectNames(redis, self.keys, settings.idempotency_ttl_seconds)
        self._background: set[asyncio.Task[None]] = set()

    async def process(
        self, body: bytes, headers: dict[str, Any] | None, redelivered: bool = False
    ) -> Outcome:
        """Decide this event's fate; raises only when even retry/dead-letter publishing failed."""
        headers = {k: v for k, v in (headers or {}).items() if not k.startswith(_BROKER_HEADERS)}
        attempts = tries_so_far(headers)
        event: EvolutionEvent | None = None
        try:
            try:
                event = await off_loop(len(body), parse_event, body)
                audio = audio_of(event)
            except EventError as exc:
                raise IngestError(exc.reason, exc.detail) from exc
            if audio is None:
                await self._non_audio(event)
                return "nonAudio"
            first = not redelivered and attempts == 0 and header_int(headers, H_DEFERRALS) == 0
            first = first and not header_int(headers, H_HELD)
            return await self._audio(event, audio, body, headers, first)
        except IngestError as exc:
            return await self._failed(body, headers, attempts, event, exc)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:
            return await self._failed(body, headers, attempts, event, _unexpected(exc))

    async def _non_audio(self, event: EvolutionEvent) -> None:
        kind = event.message_type
        await self.counters.bump(event.instance, {stats.NON_AUDIO: 1})
        await self.redis.hincrby(self.keys.non_audio, kind, 1)

    async def _audio(
        self,
        event: EvolutionEvent,
        audio: AudioMessage,
        body: bytes,
        headers: dict[str, Any],
        first: bool,
    ) -> Outcome:
        instance = event.instance
        seconds = audio.seconds or 0
        idem = event.idempotency_key
        received = {stats.RECEIVED: 1} if first else {}
        if seconds:  # filtered from the event alone, duplicate or not: one round trip to count
            verdict = (await self.config.filter_for(instance)).verdict(seconds)
            if verdict != "ok":
                return await self._filtered(instance, seconds, verdict, received)
        # One round trip: count it as received and learn whether it was already queued.
        pipe = self.redis.pipeline(transaction=False)
        if received:
            self.counters.bump_on(pipe, instance, received)
        pipe.exists(self.keys.seen(idem))
        already_seen = bool((await pipe.execute())[-1])
        media: Media | None = None
        if not seconds and not already_seen:
            # No `seconds`: fetch, measure, filter, then a token (never wasted).
            media = await self.fetcher.fetch(event, audio)
            seconds = await self._measure(media)
            verdict = (await self.config.filter_for(instance)).verdict(seconds)
            if verdict != "ok":
                return await self._filtered(instance, seconds, verdict, {})
        if already_seen:
            await self.counters.bump(instance, {stats.DUPLICATES: 1})
            log.info("duplicate ignored", id=idem)
            return "duplicate"
        if not header_int(headers, H_ADMITTED):
            outcome = await self._admit(event, body, headers, idem)
            if outcome is not None:
                return outcome
        try:
            return await self._store_and_queue(event, audio, headers, idem, seconds, media)
        except IngestError as exc:
            exc.admitted = True
            raise
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:  # a Redis or broker fault after the token was taken
            error = _unexpected(exc)
            error.admitted = True
            raise error from exc

    async def _filtered(
        self, instance: str, seconds: int, verdict: Filtered, counts: dict[str, int]
    ) -> Outcome:
        await self.counters.bump(instance, {**counts, verdict: 1})
        log.debug("filtered", instance=instance, seconds=seconds, verdict=verdict)
        return verdict

    async def _admit(
        self, event: EvolutionEvent, body: bytes, headers: dict[str, Any], idem: str
    ) -> Outcome | None:
        """Take a token; None when admitted, else what happened to the event instead."""
        instance = event.instance
        limit = await self.config.ratelimit()
        admission = await self.bucket.acquire(instance, limit)
        if not admission.admitted:
            if limit.policy == "defer":
                await self._defer(body, headers, idem, admission.retryAfterMs)
                await self._after_decided(self.counters.bump(instance, {stats.DEFERRED: 1}))
                return "deferred"
            # A rejection is the event's only trace: its report is confirmed before the ack.
            await self.publisher.monitoring(
                queue_error(
                    self.settings,
                    {
                        "error": "Rate limit exceeded",
                        "messageId": event.data.key.id,
                        "instance": instance,
                        "retryAfterMs": admission.retryAfterMs,
                        "tokens": round(admission.globalTokens, 3),
                    },
                    instance,
                )
            )
            await self._after_decided(self.counters.bump(instance, {stats.RATE_LIMITED: 1}))
            return "rateLimited"
        return None

    async def _store_and_queue(
        self,
        event: EvolutionEvent,
        audio: AudioMessage,
        headers: dict[str, Any],
        idem: str,
        seconds: int,
        media: Media | None = None,
    ) -> Outcome:
        instance = event.instance
        held = self.holds.first() if self.holds is not None else None
        if held is not None:  # taken just before the hold began: straight back, untried
            raise IngestError(
                f"{held.dependency}_unavailable", "held", transient=True, dependency=held.dependency
            )
        if media is None:
            media = await self.fetcher.fetch(event, audio)
        s3_key = await self.names.claim(idem, instance, media.mimetype)
        await self.store.upload(s3_key, media.data, media.mimetype)
        url = await self.store.url_for(s3_key)
        received_at = header_float(headers, H_RECEIVED_AT) or time.time() * 1000
        message = {k: v for k, v in (event.data.message or {}).items() if k != "base64"}
        item = QueuedAudio(
            id=idem,
            instance=instance,
            key=event.data.key,
            message=message,
            audioUrl=url,
            audioDuration=seconds,
            mimeType=media.mimetype,
            s3Key=s3_key,
            priority=priority_of(await self.config.ratelimit(), instance),
            receivedAt=received_at,
            queuedAt=time.time() * 1000,
            server_url=event.server_url,
            apikey=event.apikey,
        )
        encoded = encode(item)
        await self.publisher.queue_audio(item, encoded)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.keys.seen(idem), encoded, ex=self.settings.idempotency_ttl_seconds)
        self.counters.bump_on(pipe, instance, {stats.PROCESSED: 1})
        await self._after_decided(pipe.execute())
        log.info(
            "queued",
            id=idem,
            key=s3_key,
            bytes=len(media.data),
            source=media.source,
            seconds=seconds,
        )
        return "queued"

    async def _measure(self, media: Media) -> int:
        """Whole seconds read from the audio itself; unreadable media is dead-lettered."""
        try:
            length = await off_loop(len(media.data), audio_seconds, media.data, media.mimetype)
        except UnreadableDuration as exc:
            raise IngestError("unreadable_duration", str(exc)) from exc
        return whole_seconds(length)

    async def _after_decided(self, bookkeeping: Awaitable[Any]) -> None:
        """Counts and marks written once the event's fate is confirmed in RabbitMQ.

        Failing here must not send the event round again: that would queue or report it twice.
        """
        try:
            await bookkeeping
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:
            log.warning("bookkeeping after a decided event failed", error=str(exc))

    async def _defer(
        self, body: bytes, headers: dict[str, Any], idem: str, retry_after_ms: int
    ) -> None:
        delay = defer_delay_ms(retry_after_ms)
        held = dict(headers)
        held[H_DEFERRALS] = header_int(headers, H_DEFERRALS) + 1
        held.setdefault(H_RECEIVED_AT, time.time() * 1000)
        await self.publisher.later(body, delay_ms=delay, headers=held, message_id=idem)

    async def _failed(
        self,
        body: bytes,
        headers: dict[str, Any],
        attempts: int,
        event: EvolutionEvent | None,
        exc: IngestError,
    ) -> Outcome:
        instance = event.instance if event else None
        idem = event.idempotency_key if event else None
        if exc.dependency is not None and self.holds is not None:
            return await self._held(body, headers, idem, exc)
        attempt = attempts + 1
        if exc.transient and attempt < self.settings.ingest_max_attempts:
            retry = dict(headers)
            retry[topology.H_ATTEMPTS] = attempt
            retry[topology.H_REASON] = exc.reason
            retry.setdefault(H_RECEIVED_AT, time.time() * 1000)
            if exc.admitted:
                retry[H_ADMITTED] = 1
            delay = retry_delay_ms(attempt)
            await self.publisher.later(body, delay_ms=delay, headers=retry, message_id=idem)
            log.warning("retry later", id=idem, reason=exc.reason, attempt=attempt, delay_ms=delay)
            return "retry"
        await self.publisher.dead_letter(
            body,
            reason=exc.reason,
            detail=exc.detail,
            attempts=attempt,
            message_id=idem,
            headers={k: v for k, v in headers.items() if k != topology.H_REASON},
        )
        await self._after_decided(self.counters.bump(instance, {stats.INGEST_FAILED: 1}))
        log.warning("dead-lettered", id=idem, reason=exc.reason, detail=exc.detail[:200])
        self._monitor(
            instance,
            {
                "error": f"Ingest failed: {exc.reason}",
                "reason": exc.reason,
                "detail": exc.detail[:500],
                "messageId": event.data.key.id if event else None,
                "instance": instance,
                "attempts": attempt,
                "stage": "ingest",
            },
        )
        return "deadLettered"

    async def _held(
        self, body: bytes, headers: dict[str, Any], idem: str | None, exc: IngestError
    ) -> Outcome:
        """Back to the ingest queue with its attempts untouched; the worker holds that queue."""
        assert self.holds is not None and exc.dependency is not None
        self.holds.trip(exc.dependency, f"{exc.reason}: {exc.detail}")
        back = dict(headers)
        if exc.dependency != "redis":  # with Redis down its `received` count was not written
            back[H_HELD] = header_int(headers, H_HELD) + 1
        back.setdefault(H_RECEIVED_AT, time.time() * 1000)
        if exc.admitted:
            back[H_ADMITTED] = 1
        await self.publisher.later(body, delay_ms=_HELD_DELAY_MS, headers=back, message_id=idem)
        log.info("held for a dependency", id=idem, dependency=exc.dependency)
        return "held"

    def _monitor(self, instance: str | None, data: dict[str, Any]) -> None:
        """Send a `queue.error` without making the event wait for it."""
        if len(self._background) >= _MAX_PENDING_MONITORING:
            log.warning("monitoring backlog full, queue.error dropped", instance=instance)
            return
        event = queue_error(self.settings, data, instance)
        task = asyncio.create_task(self._send_monitoring(event))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_monitoring(self, event: MonitoringEvent) -> None:
        try:
            await self.publisher.monitoring(event)
        except Exception as exc:
            log.warning("monitoring event not sent", error=str(exc))

    async def flush(self, timeout: float) -> None:
        """Let pending monitoring publishes finish (at shutdown)."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout)


def _unexpected(exc: Exception) -> IngestError:
    """Redis being down is a dependency hold; anything else is retried as this event's fault."""
    detail = f"{type(exc).__name__}: {exc}"
    if redis_down(exc):
        return IngestError("redis_unavailable", detail, transient=True, dependency="redis")
    log.exception("unexpected ingest failure")
    return IngestError("internal_error", detail, transient=True)
