"""The feedback scheduler loop of one control plane: due ticks claimed, reactions and ends sent.

The loop wakes on the earliest due tick in Redis, claims each due tick atomically (so with several
replicas each reaction is sent once) and sends reactions in tasks, so a slow Evolution API never
stalls other sessions. Now and then it sweeps away sessions nobody drives any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, TypeVar

import redis.asyncio as aioredis

from controlplane.feedback.evolution import EvolutionClient, EvolutionError
from controlplane.feedback.records import record_finished
from controlplane.feedback.store import FeedbackStore, Session
from fila import logging as flog
from fila.keys import Keys
from fila.settings import Settings

log = flog.get("controlplane.feedback")

END_CALL_BUDGET = 20.0
"""Seconds of retries for each call of an end."""
END_CALL_WORST = END_CALL_BUDGET + EvolutionClient.PER_CALL_TIMEOUT
"""A call's last attempt may start just before its budget runs out and take a full timeout."""
LEASE_MARGIN = 0.5
"""Seconds kept free at the end of a tick's lease for the release to land."""
MIN_TICK_BUDGET = 0.5
"""A tick whose send could get less time than this is skipped, not sent late."""
MAX_END_ATTEMPTS = 5
"""Ends still failing after this many takes are completed anyway (and logged)."""
BATCH = 200
MAX_SENDS = 64
STOP_WAIT_SECONDS = 2.0
"""How long a stop lets a pass in progress end before cancelling it."""

T = TypeVar("T")


def now_ms() -> int:
    return int(time.time() * 1000)


class FeedbackScheduler:
    """Drives the feedback sessions in Redis from this replica; `start()` resumes them."""

    def __init__(self, settings: Settings, redis: aioredis.Redis) -> None:
        self.settings = settings
        self.store = FeedbackStore(redis, Keys(settings.redis_prefix))
        self.cycle = settings.feedback_cycle
        self.interval_ms = max(1, int(settings.feedback_interval_seconds * 1000))
        self.tick_budget = max(settings.feedback_interval_seconds, 5.0)
        self.sending_lease_ms = int((self.tick_budget + 5.0) * 1000)
        # How long an end (wait for the reaction in flight, final reaction, text) may take before
        # another replica takes it over: above its worst case, or the text could go out twice.
        self.end_lease_ms = self.sending_lease_ms + int(2 * END_CALL_WORST * 1000) + 15_000
        self.poll_cap = min(0.5, settings.feedback_interval_seconds / 2)
        self.orphan_grace_ms = max(60_000, 10 * self.interval_ms)
        self._evolution: EvolutionClient | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._sends = asyncio.Semaphore(MAX_SENDS)

    # ------------------------------------------------------------------ lifecycle

    @property
    def evolution(self) -> EvolutionClient:
        if self._evolution is None:
            self._evolution = EvolutionClient(self.settings)
        return self._evolution

    async def start(self) -> None:
        """Start the scheduler; sessions already in Redis resume on their next due tick."""
        if self._loop_task is None:
            self._stopping = False
            self._loop_task = asyncio.create_task(self._run(), name="feedback-scheduler")
            log.info("feedback scheduler started", sessions=len(await self.store.scheduled()))

    async def stop(self, grace: float = 10.0) -> None:
        """Stop ticking; let sends in flight finish (bounded), then release what is held."""
        if self._loop_task is not None:
            self._stopping = True
            self._wake.set()
            task = self._loop_task
            # A pass in progress ends on its own, so a tick it has claimed also gets its task.
            await asyncio.wait({task}, timeout=STOP_WAIT_SECONDS)
            # Cancel until it ends: a cancel landing as a wait times out can be swallowed.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
            self._loop_task = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        if self._evolution is not None:
            await self._evolution.aclose()
            self._evolution = None

    def wake(self) -> None:
        """A session was started: look at the schedule now rather than at the next poll."""
        self._wake.set()

    def end_soon(self, sid: str) -> asyncio.Task[tuple[int, int] | None]:
        """Send the end of a session that is ending, in a task of its own (see `_end`)."""
        return self._track(asyncio.create_task(self._end(sid)))

    async def sweep_orphans(self) -> int:
        """End sessions nobody has driven for long, and drop half-written ones: how many."""
        candidates = set(await self.store.scheduled()) | set(await self.store.stored_ids())
        removed = 0
        for sid in sorted(candidates):
            reason = await self.store.remove_if_orphan(sid, now_ms(), self.orphan_grace_ms)
            if reason:
                removed += 1
                log.warning("orphan feedback session removed", session_id=sid, reason=reason)
        return removed

    # ------------------------------------------------------------------ the loop

    def _track(self, task: asyncio.Task[T]) -> asyncio.Task[T]:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self) -> None:
        failures = 0
        sweep_every = self.settings.feedback_orphan_sweep_seconds
        next_sweep = time.monotonic() + sweep_every
        while not self._stopping:
            try:
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + sweep_every
                    removed = await self.sweep_orphans()
                    log.info("feedback orphan sweep", removed=removed)
                busy = await self._pass()
                failures = 0
                if busy:
                    await asyncio.sleep(0)
                    continue
                await self._sleep_until_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.error("feedback scheduler pass failed", error=str(exc), failures=failures)
                await self._nap(min(5.0, 0.2 * 2 ** min(failures, 5)))

    async def _sleep_until_due(self) -> None:
        first = await self.store.next_due()
        delay = self.poll_cap
        if first is not None:
            delay = min(delay, max(0.0, (first - now_ms()) / 1000))
        if delay > 0:
            await self._nap(delay)

    async def _nap(self, delay: float) -> None:
        """Wait `delay` seconds, less when woken: a session started, or a stop."""
        self._wake.clear()
        if self._stopping:
            return
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=delay)
        finally:
            waiter.cancel()

    async def _pass(self) -> bool:
        """Claim every due tick; True when there may be more due right away."""
        now = now_ms()
        due = await self.store.due(now, BATCH)
        for sid, score in due:
            if self._stopping:
                return False  # claim nothing more: what is claimed gets its task, then we end
            claim = await self.store.claim(
                sid,
                score,
                now,
                interval_ms=self.interval_ms,
                sending_lease_ms=self.sending_lease_ms,
                end_lease_ms=self.end_lease_ms,
                timeout_emoji=self.settings.feedback_timeout_emoji,
                cycle=len(self.cycle),
            )
            if claim.kind == "tick":
                self._track(asyncio.create_task(self._tick(sid, claim.index, claim.token)))
            elif claim.kind == "end":
                self._track(asyncio.create_task(self._end(sid)))
        return len(due) >= BATCH

    async def _tick(self, sid: str, index: int, token: str) -> None:
        try:
            async with self._sends:
                s = await self.store.get(sid)
                if s is None or s.state != "active" or s.sendingBy != token:
                    return  # ended, or waited so long for a slot that the tick was re-let
                # The send must end inside its lease (a finish waits for the lease, not for us):
                # a call takes at most its budget plus one attempt of at most the budget.
                left = (s.sendingUntil - now_ms()) / 1000 - LEASE_MARGIN
                budget = min(self.tick_budget, left / 2)
                if budget < MIN_TICK_BUDGET:
                    log.warning("feedback reaction skipped: its slot came too late", session_id=sid)
                    return
                emoji = self.cycle[index % len(self.cycle)]
                await self.evolution.send_reaction(
                    s.instance, s.chatId, s.messageId, emoji, budget=budget, from_me=s.fromMe
                )
        except EvolutionError as exc:
            log.error("feedback reaction not sent", session_id=sid, error=str(exc))
        except Exception as exc:
            log.error("feedback tick failed", session_id=sid, error=str(exc))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.release(sid, token))

    async def _wait_no_send(self, sid: str) -> Session | None:
        """The session once no reaction is in flight, so the final one lands last."""
        deadline = time.monotonic() + self.sending_lease_ms / 1000
        while True:
            s = await self.store.get(sid)
            if s is None or s.sendingUntil <= now_ms() or time.monotonic() > deadline:
                return s
            await asyncio.sleep(0.05)

    async def _end(self, sid: str) -> tuple[int, int] | None:
        """Send the end reaction (then text) and complete; (finishedAt, durationMs) when done."""
        try:
            s = await self._wait_no_send(sid)
            if s is None or s.state != "ending":
                return None
            delivered = True
            try:
                if not s.endReactionSent:
                    await self.evolution.send_reaction(
                        s.instance,
                        s.chatId,
                        s.messageId,
                        s.endReaction,
                        budget=END_CALL_BUDGET,
                        from_me=s.fromMe,
                    )
                    if not await self.store.mark(sid, "endReactionSent"):
                        return None  # deleted, or completed by another replica meanwhile
                if s.endText and not s.endTextSent:
                    await self.evolution.send_text(
                        s.instance, s.chatId, s.endText, budget=END_CALL_BUDGET
                    )
                    if not await self.store.mark(sid, "endTextSent"):
                        return None
            except EvolutionError as exc:
                delivered = False
                log.error(
                    "feedback end not delivered",
                    session_id=sid,
                    attempt=s.endAttempts,
                    error=str(exc),
                )
                if s.endAttempts < MAX_END_ATTEMPTS:
                    await self.store.reschedule(sid, now_ms() + min(self.end_lease_ms, 5_000))
                    return None
            done = await self.store.complete(sid, now_ms(), s.endStatus)
            if done is None:
                return None
            log.info(
                "feedback session ended",
                session_id=sid,
                status=s.endStatus,
                duration_ms=done.durationMs,
                delivered=delivered,
            )
            await record_finished(sid, s, done)
            return (done.finishedAt, done.durationMs) if delivered else None
        except Exception as exc:
            log.error("feedback end failed", session_id=sid, error=str(exc))
            return None
