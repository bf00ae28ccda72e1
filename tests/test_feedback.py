"""Processing feedback against real Redis and a real Evolution API stub over HTTP.

The service runs in-process (its loop, its Lua claims, its HTTP calls are all real); intervals
come from settings so a session ticks every 0.3 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from controlplane.errors import FieldError, NotFound
from controlplane.feedback import schemas
from controlplane.feedback.service import FeedbackService
from fila.keys import Keys
from fila.settings import Settings
from simulator.evolution import EvolutionCall, EvolutionStub
from tests.support import wait_for

SPIN, WAIT = "🔄", "⏳"
INTERVAL = 0.3


@pytest.fixture
async def stub(settings: Settings) -> AsyncIterator[EvolutionStub]:
    async with EvolutionStub(api_key=settings.evolution_api_key) as evolution:
        yield evolution


def fast(settings: Settings, stub: EvolutionStub, **changes: Any) -> Settings:
    base: dict[str, Any] = {
        "evolution_url": stub.url,
        "feedback_interval_seconds": INTERVAL,
        "feedback_timeout_seconds": 60.0,
    }
    return settings.replace(**{**base, **changes})


class Services:
    """Feedback services started by a test, stopped at teardown whatever happens."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self.started: list[FeedbackService] = []

    async def start(self, settings: Settings) -> FeedbackService:
        service = FeedbackService(settings, self.redis)
        await service.start()
        self.started.append(service)
        return service


@pytest.fixture
async def services(redis: aioredis.Redis) -> AsyncIterator[Services]:
    holder = Services(redis)
    yield holder
    for service in holder.started:
        await service.stop()


def reactions(stub: EvolutionStub, message_id: str, ok: bool = True) -> list[EvolutionCall]:
    return [
        c
        for c in stub.calls_to("sendReaction")
        if c.json["key"]["id"] == message_id and (c.status < 400) == ok
    ]


def emojis(stub: EvolutionStub, message_id: str) -> list[str]:
    return [c.json["reaction"] for c in reactions(stub, message_id)]


def score_now() -> int:
    return int(time.time() * 1000)


def alternates(seq: list[str]) -> bool:
    """🔄 ⏳ 🔄 ⏳ … from the first tick on: no tick sent twice, none skipped."""
    return all(e == (SPIN if i % 2 == 0 else WAIT) for i, e in enumerate(seq))


def start_body(message_id: str, instance: str = "inst-1") -> schemas.StartBody:
    return schemas.StartBody(
        instance=instance,
        chatId="5511999990000@s.whatsapp.net",
        messageId=message_id,
        processType="transcription",
    )


def finish_body(
    message_id: str, status: schemas.FinishStatus, texto: str | None = None
) -> schemas.FinishBody:
    return schemas.FinishBody(
        instance="inst-1",
        chatId="5511999990000@s.whatsapp.net",
        messageId=message_id,
        status=status,
        texto=texto,
    )


async def test_session_alternates_then_finishes_with_reaction_and_text(
    settings: Settings, stub: EvolutionStub, services: Services
) -> None:
    service = await services.start(fast(settings, stub))
    started = await service.start_session(start_body("MSG1"))
    assert started.success and started.sessionId == "inst-1:5511999990000@s.whatsapp.net:MSG1"

    await wait_for(lambda: len(emojis(stub, "MSG1")) >= 4, timeout=30)
    first = reactions(stub, "MSG1")[0]
    assert first.instance == "inst-1"
    assert first.json["key"] == {
        "remoteJid": "5511999990000@s.whatsapp.net",
        "fromMe": False,
        "id": "MSG1",
    }
    status = await service.status()
    assert status.activeSessionsCount == 1 and status.stats.activeCount == 1
    row = status.activeSessions[0]
    assert row.sessionId == started.sessionId and row.processType == "transcription"
    assert row.timeoutAt - row.startTime == 60_000 and row.runningFor > 0
    assert row.currentEmoji in (SPIN, WAIT)

    done = await service.finish_session(finish_body("MSG1", "success", "Transcrição pronta"))
    assert done.success and done.finalReaction == "✅" and done.textSent
    assert done.durationMs > 0
    seq = emojis(stub, "MSG1")
    assert seq[-1] == "✅" and alternates(seq[:-1]), seq
    texts = stub.calls_to("sendText", "inst-1")
    assert [t.json for t in texts] == [
        {"number": "5511999990000@s.whatsapp.net", "text": "Transcrição pronta"}
    ]
    assert texts[0].at >= reactions(stub, "MSG1")[-1].at

    # The loop is over: no reaction after the final one.
    await asyncio.sleep(INTERVAL * 4)
    assert emojis(stub, "MSG1") == seq
    status = await service.status()
    assert status.activeSessionsCount == 0
    assert status.stats.totalStarted == 1 and status.stats.finished == 1
    assert status.stats.averageProcessingTime == done.durationMs
    assert status.stats.byStatus == {"success": 1}

    with pytest.raises(NotFound):
        await service.finish_session(finish_body("MSG1", "error"))


async def test_error_and_aborted_use_their_emoji_and_no_text_without_texto(
    settings: Settings, stub: EvolutionStub, services: Services
) -> None:
    service = await services.start(fast(settings, stub))
    cases: list[tuple[str, schemas.FinishStatus]] = [("E1", "error"), ("A1", "aborted")]
    for message_id, status in cases:
        await service.start_session(start_body(message_id))

        def ticked(m: str = message_id) -> bool:
            return len(emojis(stub, m)) >= 1

        await wait_for(ticked, timeout=30)
        await service.finish_session(finish_body(message_id, status))
    assert emojis(stub, "E1")[-1] == "❌"
    assert emojis(stub, "A1")[-1] == "⚠️"
    assert stub.calls_to("sendText") == []


async def test_session_left_alone_times_out_with_shrug(
    settings: Settings, stub: EvolutionStub, services: Services
) -> None:
    service = await services.start(fast(settings, stub, feedback_timeout_seconds=1.5))
    await service.start_session(start_body("LONELY"))
    await wait_for(lambda: "🤷" in emojis(stub, "LONELY"), timeout=30)
    seq = emojis(stub, "LONELY")
    assert seq[-1] == "🤷" and len(seq) >= 3 and alternates(seq[:-1]), seq

    await asyncio.sleep(INTERVAL * 4)
    assert emojis(stub, "LONELY") == seq
    status = await service.status()
    assert status.activeSessionsCount == 0
    assert status.stats.timedOut == 1 and status.stats.averageProcessingTime >= 1500
    assert stub.calls_to("sendText") == []


async def test_session_survives_a_restart_and_resumes_its_loop(
    settings: Settings, stub: EvolutionStub, services: Services, redis: aioredis.Redis
) -> None:
    fast_settings = fast(settings, stub)
    first = await services.start(fast_settings)
    started = await first.start_session(start_body("SURVIVOR"))
    await wait_for(lambda: len(emojis(stub, "SURVIVOR")) >= 3, timeout=30)
    await first.stop()
    services.started.remove(first)
    before = len(emojis(stub, "SURVIVOR"))
    # Nothing drives the session now, but it is still in Redis.
    keys = Keys(settings.redis_prefix)
    assert await redis.zscore(keys.feedback_sessions, started.sessionId) is not None
    await asyncio.sleep(INTERVAL * 3)
    assert len(emojis(stub, "SURVIVOR")) == before

    second = await services.start(fast_settings)
    await wait_for(lambda: len(emojis(stub, "SURVIVOR")) >= before + 3, timeout=30)
    assert alternates(emojis(stub, "SURVIVOR")), emojis(stub, "SURVIVOR")
    done = await second.finish_session(finish_body("SURVIVOR", "success"))
    assert done.durationMs >= INTERVAL * 3 * 1000
    assert emojis(stub, "SURVIVOR")[-1] == "✅"


async def test_two_replicas_send_each_reaction_once(
    settings: Settings, stub: EvolutionStub, services: Services, redis: aioredis.Redis
) -> None:
    fast_settings = fast(settings, stub)
    a = await services.start(fast_settings)
    b = await services.start(fast_settings)
    ids = [f"PAIR{i}" for i in range(20)]
    for i, message_id in enumerate(ids):
        await (a if i % 2 == 0 else b).start_session(start_body(message_id, instance=f"inst-{i}"))
    await wait_for(lambda: all(len(emojis(stub, m)) >= 6 for m in ids), timeout=60)
    # Stop both (in-flight sends finish), then compare what the stub got with the ticks claimed.
    for service in (a, b):
        await service.stop()
    services.started.clear()
    keys = Keys(settings.redis_prefix)
    for i, message_id in enumerate(ids):
        sid = f"inst-{i}:5511999990000@s.whatsapp.net:{message_id}"
        ticks = int(await redis.hget(keys.feedback_session(sid), "tick") or 0)
        seq = emojis(stub, message_id)
        assert len(seq) == ticks, (message_id, ticks, seq)
        assert alternates(seq), (message_id, seq)


async def test_a_stop_during_a_claim_sends_that_tick_and_claims_no_more(
    settings: Settings, stub: EvolutionStub, services: Services, redis: aioredis.Redis
) -> None:
    """A claim moves the session's tick in Redis: a stop landing right after it must let the
    reaction go out (or the tick is counted and never sent), and claim nothing further."""
    service = FeedbackService(fast(settings, stub), redis)
    services.started.append(service)  # stopped at teardown whatever happens
    claims: list[float] = []
    claimed = asyncio.Event()
    real_claim = service.store.claim

    async def slow_claim(*args: Any, **kwargs: Any) -> Any:
        claims.append(time.monotonic())
        result = await real_claim(*args, **kwargs)
        claimed.set()
        await asyncio.sleep(0.5)  # the stop lands here, between the claim and its send
        return result

    service.store.claim = slow_claim  # type: ignore[method-assign]
    ids = [f"STOPPED{i}" for i in range(5)]
    sids = [
        (await service.start_session(start_body(m, instance=f"inst-{i}"))).sessionId
        for i, m in enumerate(ids)
    ]
    await service.start()  # its first pass finds all five due
    await asyncio.wait_for(claimed.wait(), timeout=30)
    stopping = time.monotonic()
    await service.stop()
    services.started.clear()
    assert len(claims) == 1 and claims[0] < stopping, claims  # none begun once stopping
    keys = Keys(settings.redis_prefix)
    ticks = [int(await redis.hget(keys.feedback_session(sid), "tick") or 0) for sid in sids]
    assert sum(ticks) == 1, ticks
    assert [len(emojis(stub, m)) for m in ids] == ticks


async def test_a_due_tick_is_claimed_once_among_concurrent_claimers(
    settings: Settings, stub: EvolutionStub, redis: aioredis.Redis
) -> None:
    service = FeedbackService(fast(settings, stub), redis)
    started = await service.start_session(start_body("RACE"))
    store = service.store
    [(sid, score)] = await store.due(score_now() + 1, 10)
    assert sid == started.sessionId

    async def claim() -> str:
        c = await store.claim(
            sid,
            score,
            score,  # "now" fixed at the due time: a stalled claimer must not move the next one
            interval_ms=service.interval_ms,
            sending_lease_ms=service.sending_lease_ms,
            end_lease_ms=60_000,
            timeout_emoji="🤷",
            cycle=2,
        )
        if c.kind == "tick":
            await store.release(sid, c.token)
        return c.kind

    kinds = await asyncio.gather(*(claim() for _ in range(12)))
    assert kinds.count("tick") == 1 and kinds.count("skip") == 11, kinds
    session = await store.get(sid)
    assert session is not None and session.tick == 1 and session.currentReaction == 0
    assert (await store.scheduled())[sid] == score + service.interval_ms
    await service.stop()


async def test_failing_evolution_call_is_retried_and_loop_goes_on(
    settings: Settings, stub: EvolutionStub, services: Services
) -> None:
    stub.fail_next("sendReaction", 2, 503)
    service = await services.start(fast(settings, stub))
    await service.start_session(start_body("FLAKY"))
    await wait_for(lambda: len(emojis(stub, "FLAKY")) >= 2, timeout=30)
    calls = [c for c in stub.calls_to("sendReaction") if c.json["key"]["id"] == "FLAKY"]
    # The first tick failed twice and was retried until it got through: still 🔄 first.
    assert [c.status for c in calls[:3]] == [503, 503, 201]
    assert [c.json["reaction"] for c in calls[:3]] == [SPIN, SPIN, SPIN]

    # A refused call (4xx) is not retried; the next tick still goes out.
    stub.fail_next("sendReaction", 1, 400)
    refused_at = len(calls)
    await wait_for(lambda: len(reactions(stub, "FLAKY", ok=False)) >= 3, timeout=30)
    await wait_for(
        lambda: (
            len(stub.calls_to("sendReaction")) >= refused_at + 3
            and stub.calls_to("sendReaction")[-1].status < 400
        ),
        timeout=30,
    )
    assert service._loop_task is not None and not service._loop_task.done()
    status = await service.status()
    assert status.activeSessionsCount == 1


async def test_final_reaction_is_retried_before_the_text(
    settings: Settings, stub: EvolutionStub, services: Services
) -> None:
    service = await services.start(fast(settings, stub))
    await service.start_session(start_body("FINAL"))
    await wait_for(lambda: len(emojis(stub, "FINAL")) >= 1, timeout=30)
    stub.fail_next("sendReaction", 1, 500)
    stub.fail_next("sendText", 1, 502)
    done = await service.finish_session(finish_body("FINAL", "success", "ok"))
    assert done.success and done.textSent
    assert emojis(stub, "FINAL")[-1] == "✅"
    assert [c.status for c in stub.calls_to("sendText")] == [502, 201]


async def test_start_is_idempotent_and_validates_fields(
    settings: Settings, stub: EvolutionStub, services: Services
) -> None:
    service = await services.start(fast(settings, stub))
    first = await service.start_session(start_body("TWICE"))
    again = await service.start_session(start_body("TWICE"))
    assert again.alreadyActive and again.startedAt == first.startedAt
    assert (await service.status()).stats.totalStarted == 1
    with pytest.raises(FieldError) as bad:
        await service.start_session(schemas.StartBody(instance="inst-1", chatId=" ", messageId="X"))
    assert bad.value.field == "chatId"

    deleted = await service.delete_session(first.sessionId)
    assert deleted.success and deleted.sessionId == first.sessionId
    with pytest.raises(NotFound):
        await service.delete_session(first.sessionId)
    assert (await service.status()).activeSessionsCount == 0


async def test_cleanup_orphans_removes_only_broken_or_abandoned_sessions(
    settings: Settings, stub: EvolutionStub, redis: aioredis.Redis
) -> None:
    # No loop running: orphans are exactly what nobody drives.
    service = FeedbackService(fast(settings, stub), redis)
    keys = Keys(settings.redis_prefix)
    healthy = await service.start_session(start_body("HEALTHY"))
    abandoned = await service.start_session(start_body("ABANDONED"))
    # Abandoned: timed out an hour ago and never driven since.
    await redis.hset(keys.feedback_session(abandoned.sessionId), "timeoutAt", 1_000)
    await redis.zadd(keys.feedback_sessions, {abandoned.sessionId: 1_000})
    # Scheduled without data, and data without a schedule.
    await redis.zadd(keys.feedback_sessions, {"inst-1:ghost@s.whatsapp.net:G1": 1_000})
    await redis.hset(
        keys.feedback_session("inst-1:lost@s.whatsapp.net:L1"),
        mapping={"instance": "inst-1", "chatId": "lost@s.whatsapp.net"},
    )
    # Scheduled, every field present, but a start time that is not a number.
    broken = "inst-1:broken@s.whatsapp.net:B1"
    await redis.hset(
        keys.feedback_session(broken),
        mapping={
            "instance": "inst-1",
            "chatId": "broken@s.whatsapp.net",
            "messageId": "B1",
            "startedAt": "yesterday",
            "timeoutAt": "9999999999999",
            "state": "active",
        },
    )
    await redis.zadd(keys.feedback_sessions, {broken: score_now()})
    result = await service.cleanup_orphans()
    assert result.removed == 4
    remaining = await service.status()
    assert [s.sessionId for s in remaining.activeSessions] == [healthy.sessionId]
    assert remaining.stats.byStatus.get("orphaned") == 4
    assert (await service.cleanup_orphans()).removed == 0
    await service.stop()


async def test_final_reaction_waits_for_the_reaction_in_flight(
    settings: Settings, stub: EvolutionStub, services: Services
) -> None:
    stub.set_latency("sendReaction", 1.0)
    service = await services.start(fast(settings, stub))
    await service.start_session(start_body("SLOW"))
    await stub.wait_for_calls("sendReaction", 1, timeout=30)
    in_flight = stub.calls_to("sendReaction")[-1]
    await service.finish_session(finish_body("SLOW", "success"))
    calls = stub.calls_to("sendReaction")
    final = calls[-1]
    assert final.json["reaction"] == "✅"
    # Sent only once the reaction before it was answered, so it cannot be overtaken.
    assert final.at - in_flight.at >= 0.9, (final.at - in_flight.at, [c.json for c in calls])
    assert all(c.json["reaction"] in (SPIN, WAIT) for c in calls[:-1])


async def test_an_end_left_half_done_by_a_dead_replica_is_taken_over(
    settings: Settings, stub: EvolutionStub, services: Services, redis: aioredis.Redis
) -> None:
    # A replica accepted a finish and died before sending anything: only Redis knows.
    crashed = FeedbackService(fast(settings, stub), redis)
    started = await crashed.start_session(start_body("ORPHANED_END"))
    outcome = await crashed.store.begin_end(
        started.sessionId, "aborted", "⚠️", "cancelado", score_now(), 300
    )
    assert outcome == "ok"
    assert stub.calls_to("sendReaction") == []

    await services.start(fast(settings, stub))
    await stub.wait_for_calls("sendText", 1, timeout=30)
    assert emojis(stub, "ORPHANED_END") == ["⚠️"]
    assert stub.calls_to("sendText")[0].json == {
        "number": "5511999990000@s.whatsapp.net",
        "text": "cancelado",
    }

    async def ended() -> bool:
        return (await crashed.status()).stats.byStatus == {"aborted": 1}

    await wait_for(ended, timeout=30)
    assert (await crashed.status()).activeSessionsCount == 0


async def test_a_tick_whose_slot_comes_too_late_is_not_sent(
    settings: Settings, stub: EvolutionStub, redis: aioredis.Redis, keys: Keys
) -> None:
    """A tick that waited for a send slot until its lease nearly ran out would be sent after a
    finish that waited for the lease: it is skipped; one with its lease ahead is sent."""
    service = FeedbackService(fast(settings, stub), redis)
    try:
        started = await service.start_session(start_body("LATE"))
        sid = started.sessionId
        for late, sends in ((True, 0), (False, 1)):
            [(due_sid, score)] = await service.store.due(score_now() + 60_000, 10)
            assert due_sid == sid
            claim = await service.store.claim(
                sid,
                score,
                max(score, score_now()),
                interval_ms=service.interval_ms,
                sending_lease_ms=service.sending_lease_ms,
                end_lease_ms=60_000,
                timeout_emoji="🤷",
                cycle=2,
            )
            assert claim.kind == "tick"
            if late:  # the slot wait used up all but 0.8 s of the lease
                await redis.hset(keys.feedback_session(sid), "sendingUntil", score_now() + 800)
            await service._tick(sid, claim.index, claim.token)
            assert len(stub.calls_to("sendReaction")) == sends
            session = await service.store.get(sid)
            assert session is not None and session.sendingUntil == 0  # released either way
    finally:
        await service.stop()


async def test_marking_an_end_step_never_brings_back_a_gone_session(
    settings: Settings, stub: EvolutionStub, redis: aioredis.Redis, keys: Keys
) -> None:
    """An end still sending when its session is deleted (or completed elsewhere) stops there."""
    service = FeedbackService(fast(settings, stub), redis)
    try:
        started = await service.start_session(start_body("GONE"))
        sid = started.sessionId
        assert await service.store.mark(sid, "endReactionSent") is False  # active, not ending
        assert await redis.hget(keys.feedback_session(sid), "endReactionSent") is None
        await service.delete_session(sid)
        assert await service.store.mark(sid, "endTextSent") is False
        assert await redis.exists(keys.feedback_session(sid)) == 0
    finally:
        await service.stop()


async def test_a_running_service_sweeps_orphans_by_itself(
    settings: Settings, stub: EvolutionStub, services: Services, redis: aioredis.Redis, keys: Keys
) -> None:
    """No operator call: a half-written session is gone within a sweep period; a live one stays."""
    service = await services.start(fast(settings, stub, feedback_orphan_sweep_seconds=1.0))
    healthy = await service.start_session(start_body("KEPT"))
    lost = "inst-1:lost@s.whatsapp.net:L2"
    await redis.hset(
        keys.feedback_session(lost), mapping={"instance": "inst-1", "chatId": "lost@s.whatsapp.net"}
    )

    async def swept() -> bool:
        return await redis.exists(keys.feedback_session(lost)) == 0

    await wait_for(swept, timeout=30)
    status = await service.status()
    assert [s.sessionId for s in status.activeSessions] == [healthy.sessionId]
    assert status.stats.byStatus.get("orphaned") == 1
