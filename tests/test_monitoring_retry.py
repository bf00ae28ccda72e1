"""Monitoring reports survive a receiver outage: delay queues, then a dead letter with a reason."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aio_pika.abc import AbstractChannel

from fila import deadletters, dlq, topology
from fila.settings import Settings, SettingsError, from_env
from simulator.receiver import Receiver
from tests.support import Proc, wait_for
from tests.test_delivery import Spawn, audio, channel, fast, publish

__all__ = ["channel"]


async def _dead(channel: AbstractChannel, queue: str) -> list[deadletters.DeadLetter]:
    return await dlq.browse(channel, queue)


def _rounds(output: str) -> int:
    """Highest attempt count the worker logged for a monitoring event put back for later."""
    lines = [line for line in output.splitlines() if "monitoring event retried later" in line]
    return max((int(n) for line in lines for n in re.findall(r"attempts\W+(\d+)", line)), default=0)


@pytest.mark.parametrize("value", ["", "5,soon", "5,0", "5,inf"])
def test_bad_monitoring_schedule_names_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="FILA_MONITORING_RETRY_SCHEDULE"):
        from_env({"FILA_MONITORING_RETRY_SCHEDULE": value}, dotenv=None)


@asynccontextmanager
async def _refused_while_monitor_down(
    spawn: Spawn, settings: Settings, refusals: int, schedule: str, **more: Any
) -> AsyncIterator[tuple[Receiver, Proc]]:
    """A monitoring receiver that is down and a delivery worker retrying monitoring events on
    `schedule`, its main receiver answering 400 `refusals` times."""
    async with (
        Receiver(secret=settings.webhook_secret) as receiver,
        Receiver(secret=settings.webhook_secret) as monitor,
    ):
        await monitor.go_down()
        receiver.fail_with(400, times=refusals)
        worker = spawn(
            ["worker", "delivery"],
            fast(
                settings,
                webhook_principal_url=receiver.url,
                webhook_monitoring_url=monitor.url,
                stats_interval_seconds=3600.0,
                monitoring_retry_schedule=schedule,
                **more,
            ),
        )
        yield monitor, worker


async def test_monitoring_receiver_down_then_up_gets_every_queue_error(
    settings: Settings, spawn: Spawn, channel: AbstractChannel
) -> None:
    """The outage spans several retry rounds (one POST per round, not a 30 s retry loop)."""
    schedule = "0.2,0.3,0.5,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1"
    refused = _refused_while_monitor_down(spawn, settings, 4, schedule, log_level="INFO")
    async with refused as (monitor, worker):
        items = [audio("inst-m", n) for n in range(4)]
        await publish(channel, *items)

        async def all_dead() -> bool:
            return len(await _dead(channel, topology.GLOBAL_DLQ)) == 4

        await wait_for(all_dead, timeout=60)
        # Several rounds go by while the receiver is down; nothing is dropped meanwhile.
        await wait_for(lambda: _rounds(worker.output()) >= 4, timeout=60)
        assert "monitoring event given up" not in worker.output()
        assert await _dead(channel, topology.MONITORING_DLQ) == []

        await monitor.come_up()
        await wait_for(lambda: len(monitor.by_event("queue.error")) >= 4, timeout=60)
        errors = monitor.by_event("queue.error")
        assert sorted(e["data"]["messageId"] for e in errors) == sorted(i.id for i in items)
        assert {e["data"]["reason"] for e in errors} == {"rejected: HTTP 400"}
        assert await _dead(channel, topology.MONITORING_DLQ) == []

        async def monitoring_drained() -> bool:
            return await topology.queue_depth(channel, topology.MONITORING_QUEUE) == 0

        await wait_for(monitoring_drained, timeout=60)


async def test_exhausted_or_refused_reports_are_dead_lettered_then_replayable(
    settings: Settings, spawn: Spawn, channel: AbstractChannel
) -> None:
    async with _refused_while_monitor_down(spawn, settings, 2, "0.2,0.2") as (monitor, worker):
        first, second = audio("inst-x", 1), audio("inst-x", 2)
        await publish(channel, first)

        async def errors_dead() -> list[deadletters.DeadLetter]:
            letters = await _dead(channel, topology.MONITORING_DLQ)
            return [x for x in letters if x.body["event"] == "queue.error"]

        await wait_for(errors_dead, timeout=60)
        [letter] = await errors_dead()
        assert (letter.stage, letter.reason, letter.attempts) == (
            "monitoring",
            "retries exhausted",
            3,
        )
        assert letter.body["data"]["messageId"] == first.id
        assert letter.response and "ConnectError" in letter.response
        assert "monitoring event dead-lettered" in worker.output()

        # A receiver refusing a report (4xx) dead-letters it at once, with the status.
        await monitor.come_up()
        monitor.fail_with(422)
        await publish(channel, second)

        async def two_dead() -> bool:
            return len(await errors_dead()) == 2

        await wait_for(two_dead, timeout=60)
        refused = (await errors_dead())[1]
        assert (refused.reason, refused.statusCode, refused.attempts) == (
            "rejected: HTTP 422",
            422,
            1,
        )
        assert refused.body["data"]["messageId"] == second.id

        # Replayed onto fila.monitoring, both reach the receiver.
        result = await dlq.replay(
            channel,
            topology.MONITORING_DLQ,
            target=topology.MONITORING_QUEUE,
        )
        assert result.remaining == 0
        await wait_for(
            lambda: (
                sorted(
                    e["data"]["messageId"]
                    for d in monitor.accepted()
                    if isinstance(e := d.json, dict) and e.get("event") == "queue.error"
                )
                == sorted([first.id, second.id])
            ),
            timeout=60,
        )
