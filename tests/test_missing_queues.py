"""A queue deleted under running workers: nothing is acked into nowhere, the topology comes back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aio_pika
import msgspec
import pytest

from fila import dlq, topology
from fila.keys import Keys
from fila.models import MessageKey, MonitoringEvent, QueuedAudio, encode
from fila.settings import Settings
from tests.support import Proc, wait_for
from tests.test_ingest_support import audio_event, counters, noise, rabbit, workers
from workers import monitoring


async def test_ingest_redeclares_a_deleted_global_queue_and_loses_nothing(
    settings: Settings, redis: Any, keys: Keys, spawn: Callable[..., Proc]
) -> None:
    async with rabbit(settings) as mq:
        proc = spawn(["worker", "ingest"], settings)
        await wait_for(lambda: _one_worker(redis, keys), timeout=30)
        await mq.publish(audio_event("gone", "G0", 10, data=noise(500)))
        await wait_for(lambda: _queued(mq, 1), timeout=30)
        # An operator deletes global.messages (and its waiting message) while the worker runs.
        await mq.channel.queue_delete(topology.GLOBAL_QUEUE)
        await mq.publish(audio_event("gone", "G1", 10, data=noise(500)))
        await wait_for(lambda: _queued(mq, 1), timeout=30)
        [message] = await mq.drain(topology.GLOBAL_QUEUE)
        assert message.message_id == "gone:G1"
        assert (await counters(redis, keys))["processed"] == 2
        # Declared again exactly as before (priority, TTL, dead letters).
        fresh = await mq.channel.declare_queue(
            topology.GLOBAL_QUEUE, durable=True, arguments=topology.GLOBAL_QUEUE_ARGS
        )
        assert fresh.name == topology.GLOBAL_QUEUE
        assert proc.popen.poll() is None, proc.output()[-2000:]


async def test_replay_into_a_missing_queue_keeps_the_dead_letter(settings: Settings) -> None:
    async with rabbit(settings) as mq:
        item = QueuedAudio(
            id="inst:R1",
            instance="inst",
            key=MessageKey(remoteJid="5511@s.whatsapp.net", id="R1"),
            message={},
            audioUrl="http://s3/audio_1_inst.ogg",
            audioDuration=10,
            mimeType="audio/ogg",
            s3Key="audio_1_inst.ogg",
            priority=1,
            receivedAt=0,
            apikey="k",
        )
        await topology.publish_confirmed(
            mq.channel,
            aio_pika.Message(encode(item), message_id=item.id, headers={topology.H_REASON: "x"}),
            topology.GLOBAL_DLQ,
        )
        with pytest.raises(topology.Unroutable):
            await dlq.replay(mq.channel, topology.GLOBAL_DLQ, target="no.such.queue")
        [letter] = await dlq.browse(mq.channel, topology.GLOBAL_DLQ)
        assert letter.id == item.id


async def _one_worker(redis: Any, keys: Keys) -> bool:
    return len(await workers(redis, keys)) == 1


async def _queued(mq: Any, n: int) -> bool:
    """Asked on a channel of its own: asking about a missing queue closes the channel."""
    connection = await aio_pika.connect(mq.settings.rabbitmq_url)
    try:
        channel = await connection.channel()
        return bool(await topology.queue_depth(channel, topology.GLOBAL_QUEUE) == n)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return False
    finally:
        await connection.close()


async def test_a_deleted_delay_queue_is_declared_again(settings: Settings) -> None:
    async with rabbit(settings) as mq:
        declared: set[str] = set()
        first = aio_pika.Message(b"{}", message_id="d1")
        await topology.publish_later(
            mq.channel, settings, first, topology.GLOBAL_QUEUE, 200, declared
        )
        name = topology.delay_queue_name(topology.GLOBAL_QUEUE, 200)
        assert declared == {name}
        await wait_for(lambda: _queued(mq, 1), timeout=30)
        await mq.channel.queue_delete(name)  # remembered as declared, but gone
        second = aio_pika.Message(b"{}", message_id="d2")
        await topology.publish_later(
            mq.channel, settings, second, topology.GLOBAL_QUEUE, 200, declared
        )
        await wait_for(lambda: _queued(mq, 2), timeout=30)
        back = await mq.drain(topology.GLOBAL_QUEUE)
        assert [m.message_id for m in back] == ["d1", "d2"]


async def test_a_monitoring_report_declares_its_deleted_queue(settings: Settings) -> None:
    async with rabbit(settings) as mq:
        await mq.channel.queue_delete(topology.MONITORING_QUEUE)
        event = monitoring.event(settings, "queue.stats", {"queueSize": 0})
        assert await monitoring.publish(mq.channel, settings, event)
        [message] = await mq.drain(topology.MONITORING_QUEUE)
        assert msgspec.json.decode(message.body, type=MonitoringEvent).event == "queue.stats"
        await mq.channel.close()
        assert not await monitoring.publish(mq.channel, settings, event)  # reported, not raised
