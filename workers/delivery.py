"""Delivery worker: global.messages → the main webhook, signed, retried, dead-lettered.

A message is acknowledged only once a 2xx came back, or once it sits (confirmed) in a delay
queue or the dead letters; anything held when the process dies goes back to RabbitMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import msgspec
import redis.asyncio as aioredis
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from fila import logging as flog
from fila import startup, stats, topology
from fila.configstore import ConfigStore
from fila.keys import Keys
from fila.models import (
    ControlMessage,
    MainWebhookData,
    MainWebhookPayload,
    MonitoringEvent,
    QueuedAudio,
    encode,
)
from fila.recenterrors import RecentErrors
from fila.settings import Settings
from fila.tally import TALLY_SECONDS, Tally
from workers import monitoring, retry
from workers.breaker import Breaker
from workers.expiry import ExpiryReporter
from workers.fleet import Fleet, run
from workers.holds import Holds, redis_down
from workers.monitoring import MonitoringSender
from workers.outcomes import DELIVERY, Outcomes, queue_error, tries_so_far
from workers.statsreport import StatsReporter
from workers.webhook import Attempt, Webhooks, event_url

log = flog.get("delivery")

MAIN_EVENT = "messages.upsert"
NO_ENDPOINT_RECHECK = 2.0
"""Seconds between looks at the config while no main webhook is configured."""
GATE_TICK = 0.25


def payload(audio: QueuedAudio, settings: Settings) -> bytes:
    """The contract's main webhook body for one queued audio."""
    return encode(
        MainWebhookPayload(
            event=MAIN_EVENT,
            instance=audio.instance,
            data=MainWebhookData(
                key=audio.key,
                message=audio.message,
                audioUrl=audio.audioUrl,
                audioDuration=audio.audioDuration,
                mimeType=audio.mimeType,
            ),
            server_url=settings.server_url,
            apikey=audio.apikey,
        )
    )


class DeliveryConsumer:
    """The `Consumer` of a delivery worker (see workers.fleet)."""

    def __init__(self, settings: Settings, redis: aioredis.Redis, fleet: Fleet) -> None:
        self.settings = settings
        self.redis = redis
        self.fleet = fleet
        self.keys = Keys(settings.redis_prefix)
        self.store = ConfigStore(redis, self.keys, settings)
        self.webhooks = Webhooks(settings, self.store)
        self.breaker = Breaker(
            redis, self.keys, settings.breaker_failures, settings.breaker_probe_seconds
        )
        self.counters = stats.Counters(
            redis, self.keys, settings.timezone, settings.fleet_stats_retention_days
        )
        self.tally = Tally(self.counters)
        self._succeeded: set[str] = set()
        """Endpoints with a 2xx since the last tally write: their breakers close with it."""
        self._tally_task: asyncio.Task[None] | None = None
        self.connection: AbstractRobustConnection | None = None
        self.channel: AbstractChannel | None = None
        self.side_channel: AbstractChannel | None = None
        self.queue: AbstractQueue | None = None
        self.outcomes: Outcomes | None = None
        self.sender: MonitoringSender | None = None
        self.reporter: StatsReporter | None = None
        self.expiry: ExpiryReporter | None = None
        self._tag: str | None = None
        self._paused = False
        self._stopping = False
        self._hold_until = 0.0
        self._hold_reason = ""
        self._gate_lock = asyncio.Lock()
        self._gate_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.holds = Holds(settings, redis, fleet.info, self._announce, self._sync_gate)
        self.holds.register("redis", redis.ping)
        # The receiver has no probe here: the breaker's half-open POST is its probe.

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.connection = await startup.robust_rabbitmq(self.settings)
        self.channel = await self.connection.channel(publisher_confirms=True)
        await self.channel.set_qos(prefetch_count=self.settings.delivery_concurrency)
        self.queue = await topology.declare_global(self.channel, self.settings)
        self.outcomes = Outcomes(self.settings, self.channel, log, DELIVERY)
        self.side_channel = await self.connection.channel(publisher_confirms=True)
        await topology.declare_monitoring(self.side_channel, self.settings)
        self.sender = MonitoringSender(
            self.settings,
            await self.connection.channel(),
            self.webhooks,
            RecentErrors(self.redis, self.keys),
        )
        await self.sender.start()
        self.expiry = ExpiryReporter(
            self.settings, await self.connection.channel(), self.side_channel, self.counters
        )
        await self.expiry.start()
        self.reporter = StatsReporter(self.settings, self.redis, self.side_channel)
        self.reporter.start()
        # Started under a fleet-wide pause: never take a message (the fleet pauses us next).
        self._paused = bool(await self.redis.exists(self.keys.paused))
        self._gate_task = asyncio.create_task(
            _every(GATE_TICK, self._sync_gate, self._gate_failed), name="delivery-gate"
        )
        self._tally_task = asyncio.create_task(
            _every(TALLY_SECONDS, self._write_tally, self._tally_failed), name="delivery-tally"
        )
        await self._sync_gate()

    async def _announce(self, event: MonitoringEvent) -> None:
        if self.side_channel is not None:
            await monitoring.publish(self.side_channel, self.settings, event)

    async def pause(self) -> None:
        self._paused = True
        await self._sync_gate()

    async def resume(self) -> None:
        self._paused = False
        await self._sync_gate()

    async def apply_config(self, message: ControlMessage) -> None:
        if message.scope in (None, "webhook", "all"):
            self.webhooks.invalidate()
            if self._hold_reason == "no endpoint":
                self._hold_until = 0.0
            await self._sync_gate()

    async def stop(self, grace: float) -> None:
        """Stop consuming, let in-flight POSTs finish within `grace`, requeue the rest."""
        self._stopping = True
        await self.holds.close()
        if self._gate_task:
            self._gate_task.cancel()
        await self._sync_gate()
        if self.reporter:
            await self.reporter.stop()
        if self.expiry:
            await self.expiry.stop()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("in-flight deliveries requeued at shutdown", count=len(pending))
                await asyncio.wait(pending, timeout=5)
        if self.sender:
            await self.sender.stop(min(grace, 5.0))
        if self._tally_task:
            self._tally_task.cancel()
        with contextlib.suppress(Exception):
            await self._write_tally()
        if self.connection:
            with contextlib.suppress(Exception):
                await self.connection.close()
        await self.webhooks.aclose()

    # ------------------------------------------------------------------ consuming gate

    def _hold(self, until: float, reason: str) -> None:
        """Leave messages in RabbitMQ until `until` (epoch s): circuit open or no endpoint."""
        if until > self._hold_until:
            if reason != self._hold_reason:
                log.warning("deliveries held", reason=reason, seconds=round(until - time.time(), 1))
            self._hold_until = until
            self._hold_reason = reason

    async def _sync_gate(self) -> None:
        async with self._gate_lock:
            want = not (self._paused or self._stopping or self.holds.held("redis"))
            want = want and time.time() >= self._hold_until
            if self.queue is None:
                return
            if want and self._tag is None:
                self._tag = await self.queue.consume(self._on_message)
            elif not want and self._tag is not None:
                tag, self._tag = self._tag, None
                with contextlib.suppress(Exception):
                    await self.queue.cancel(tag)

    def _gate_failed(self, exc: Exception) -> None:
        log.warning("consumer gate failed", error=str(exc))

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.create_task(self._guarded(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ one message

    async def _guarded(self, message: AbstractIncomingMessage) -> None:
        with self.fleet.in_flight():
            try:
                await self._deliver(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if redis_down(exc):  # Redis's outage, not the message's: hold, spend nothing
                    self.holds.trip("redis", f"{type(exc).__name__}: {exc}")
                else:
                    log.error("delivery failed unexpectedly; message requeued", error=str(exc))
                    self._hold(time.time() + 1.0, "unexpected error")
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        try:
            audio = msgspec.json.decode(message.body, type=QueuedAudio)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await self._dead_letter(
                message,
                None,
                f"invalid body: {exc}",
                Attempt(status=None, response=None),
                tries_so_far(message.headers),
            )
            return
        if self._stopping or self._paused or time.time() < self._hold_until:
            await message.nack(requeue=True)
            return
        config = await self.webhooks.config()
        url = event_url(config.principal, config.webhookByEvents, MAIN_EVENT)
        if url is None:
            self._hold(time.time() + NO_ENDPOINT_RECHECK, "no endpoint")
            await message.nack(requeue=True)
            return
        admission = await self.breaker.admit(url)
        if not admission.go:
            self._hold(admission.hold_until, "circuit open")
            self.holds.trip("receiver", f"{url}: circuit open")
            await message.nack(requeue=True)
            return
        message_id = message.message_id or audio.id
        attempt = await self.webhooks.post(
            url, payload(audio, self.settings), message_id, config.headers
        )
        attempts = tries_so_far(message.headers) + 1
        if attempt.blocked:
            # A configuration problem, not the receiver's: no retry, no breaker count.
            await self._dead_letter(
                message, audio, f"blocked: {attempt.blocked}", attempt, attempts
            )
            return
        verdict = retry.verdict(attempt.status)
        if verdict == "delivered":
            await message.ack()
            await self._delivered(audio, attempt, url, admission.probe)
        elif verdict == "retry":
            if url in self._succeeded:  # the successes before this failure count first
                self._succeeded.discard(url)
                await self.breaker.reset(url)
            opened = await self.breaker.failure(url) == "open"
            if opened:
                state = await self.breaker.state(url)
                self._hold(state.nextProbeAt, "circuit open")
                self.holds.trip("receiver", f"{url}: {attempt.status or attempt.response}")
            if opened or admission.probe:
                # The endpoint is down; that is not this message's fault: no attempt spent.
                await message.nack(requeue=True)
                log.info("endpoint down, message held", endpoint=url, status=attempt.status)
                return
            await self._retry(message, audio, attempt, attempts)
        else:
            await self.breaker.success(url)
            reason = f"rejected: HTTP {attempt.status}"
            await self._dead_letter(message, audio, reason, attempt, attempts)

    async def _delivered(self, audio: QueuedAudio, attempt: Attempt, url: str, probe: bool) -> None:
        self.fleet.record(True)
        self.tally.add(audio.instance, {stats.DELIVERED: 1})
        self.tally.latency("delivery", attempt.seconds)
        if audio.receivedAt > 0:
            self.tally.latency("end_to_end", max(0.0, time.time() - audio.receivedAt / 1000))
        if probe:  # the probe that closes an open breaker: at once, not with the tally
            await self.breaker.success(url)
            log.info("endpoint healthy again, circuit closed", endpoint=url)
            self._hold_until = 0.0
        else:
            self._succeeded.add(url)
        self._hold_reason = ""
        if self.holds.held("receiver"):  # closed here or by another worker's probe
            await self.holds.release("receiver")

    def _tally_failed(self, exc: Exception) -> None:
        if redis_down(exc):
            self.holds.trip("redis", f"{type(exc).__name__}: {exc}")
        log.warning("delivery bookkeeping not written yet", error=str(exc))

    async def _write_tally(self) -> None:
        """The interval's counts, latencies and breaker successes in one round trip; kept for
        the next interval if Redis did not take them."""
        if not (self.tally.pending or self._succeeded):
            return
        urls, self._succeeded = list(self._succeeded), set()
        pipe = self.redis.pipeline(transaction=False)
        for url in urls:
            self.breaker.reset_on(pipe, url)
        taken = self.tally.write_on(pipe)
        try:
            replies = await pipe.execute()
        except BaseException:
            self.tally.put_back(taken)
            self._succeeded.update(urls)
            raise
        for url, raw in zip(urls, replies, strict=False):
            self.breaker.settled(url, raw)

    async def _retry(
        self,
        message: AbstractIncomingMessage,
        audio: QueuedAudio,
        attempt: Attempt,
        attempts: int,
    ) -> None:
        delay = retry.delay_ms(
            self.settings.retry_schedule,
            attempts,
            retry.retry_after_seconds(attempt.retry_after),
        )
        if delay is None:
            await self._dead_letter(message, audio, "retries exhausted", attempt, attempts)
            return
        assert self.outcomes is not None
        await self.outcomes.later(
            message, attempts, attempt.status, delay, message_id=message.message_id
        )
        await self.counters.bump(audio.instance, {stats.DELIVERY_RETRIED: 1})

    async def _dead_letter(
        self,
        message: AbstractIncomingMessage,
        audio: QueuedAudio | None,
        reason: str,
        attempt: Attempt,
        attempts: int,
    ) -> None:
        assert self.outcomes is not None
        headers = await self.outcomes.dead_letter(message, reason, attempt, attempts)
        self.fleet.record(False)
        instance = audio.instance if audio else None
        await self.counters.bump(instance, {stats.DELIVERY_FAILED: 1})
        if self.side_channel is not None:
            await monitoring.publish(
                self.side_channel,
                self.settings,
                queue_error(
                    self.settings,
                    {
                        "error": f"Delivery failed: {reason}",
                        "stage": "delivery",
                        "messageId": message.message_id,
                        "reason": reason,
                        "statusCode": attempt.status,
                        "attempts": attempts,
                        "response": attempt.response,
                        "failedAt": headers[topology.H_FAILED_AT],
                    },
                    instance,
                ),
            )


async def _every(
    seconds: float, step: Callable[[], Awaitable[None]], failed: Callable[[Exception], None]
) -> None:
    """`step` every `seconds` until cancelled; a failed step is reported and the next one runs."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failed(exc)


async def build(settings: Settings, redis: aioredis.Redis, fleet: Fleet) -> DeliveryConsumer:
    return DeliveryConsumer(settings, redis, fleet)


def main() -> None:
    run("delivery", build)
