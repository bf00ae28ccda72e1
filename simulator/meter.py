"""What one bench part cost, counted at the engines: AMQP, Redis, PostgreSQL, S3, webhooks, CPU.

Each figure is a difference of two readings of counters the engines keep themselves (RabbitMQ's
vhost message stats, Redis INFO commandstats, pg_stat_database, the bucket's objects, the
receiver's tally, /proc CPU times), so Fila's own code is not trusted to count itself.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import msgspec
import redis.asyncio as aioredis

from fila import s3
from fila.settings import Settings
from simulator import cpuusage
from simulator.benchenv import _management


class Reading(msgspec.Struct, kw_only=True):
    at: float
    cpu: dict[str, float]
    """CPU seconds by process group (ingest, delivery, controlplane, …)."""
    amqp: dict[str, int]
    redisCalls: int
    redisScripts: int
    pgTransactions: int
    s3Objects: int
    s3Bytes: int
    webhookPosts: int
    webhookBytes: int


class Usage(msgspec.Struct, kw_only=True):
    """Differences between two readings; `perNote` divides them by the notes delivered."""

    seconds: float
    notes: int
    cpuCores: dict[str, float]
    totals: dict[str, float]
    perNote: dict[str, float]


def group(name: str) -> str:
    """`ingest-2` → `ingest`: processes of one role are summed."""
    head = name.split("-")[0]
    return head if head in ("ingest", "delivery", "controlplane") else name


async def read(
    settings: Settings,
    redis: aioredis.Redis,
    roots: dict[str, int],
    receiver: dict[str, Any],
) -> Reading:
    cpu_by_root = await asyncio.to_thread(cpuusage.tree_cpu, roots)
    cpu: dict[str, float] = {}
    for name, seconds in cpu_by_root.items():
        cpu[group(name)] = cpu.get(group(name), 0.0) + seconds
    objects, size = await _bucket(settings)
    calls, scripts = await _redis_calls(redis)
    return Reading(
        at=time.time(),
        cpu=cpu,
        amqp=await _amqp(settings),
        redisCalls=calls,
        redisScripts=scripts,
        pgTransactions=await _pg_transactions(settings),
        s3Objects=objects,
        s3Bytes=size,
        webhookPosts=int(receiver.get("accepted", 0)),
        webhookBytes=int(receiver.get("acceptedBytes", 0)),
    )


def usage(before: Reading, after: Reading, notes: int) -> Usage:
    seconds = max(after.at - before.at, 1e-9)
    cores = {
        k: round((after.cpu.get(k, 0.0) - before.cpu.get(k, 0.0)) / seconds, 3) for k in after.cpu
    }
    totals: dict[str, float] = {
        "amqpPublish": after.amqp["publish"] - before.amqp["publish"],
        "amqpDeliver": after.amqp["deliver"] - before.amqp["deliver"],
        "amqpAck": after.amqp["ack"] - before.amqp["ack"],
        "redisCommands": after.redisCalls - before.redisCalls,
        "redisScripts": after.redisScripts - before.redisScripts,
        "pgTransactions": after.pgTransactions - before.pgTransactions,
        "s3Puts": after.s3Objects - before.s3Objects,
        "s3Bytes": after.s3Bytes - before.s3Bytes,
        "webhookPosts": after.webhookPosts - before.webhookPosts,
        "webhookBytes": after.webhookBytes - before.webhookBytes,
    }
    for name in after.amqp:
        if "." in name:  # per queue: amqpPublish.global.messages, amqpDeliver.fila.ingest…
            what, queue = name.split(".", 1)
            key = f"amqp{what.capitalize()}.{queue}"
            totals[key] = after.amqp[name] - before.amqp.get(name, 0)
    for role in ("ingest", "delivery", "controlplane"):
        totals[f"cpuSeconds.{role}"] = round(after.cpu.get(role, 0) - before.cpu.get(role, 0), 3)
    per = {k: round(v / notes, 4) if notes else 0.0 for k, v in totals.items()}
    return Usage(seconds=round(seconds, 2), notes=notes, cpuCores=cores, totals=totals, perNote=per)


async def _amqp(settings: Settings) -> dict[str, int]:
    """Messages published, delivered and acked in this run's vhost, as RabbitMQ counts them."""
    base, auth = _management(settings)
    vhost = quote(unquote(urlsplit(settings.rabbitmq_url).path.lstrip("/")) or "/", safe="")
    async with httpx.AsyncClient(base_url=base, auth=auth, timeout=15) as client:
        answer = await client.get(f"/api/vhosts/{vhost}")
        answer.raise_for_status()
        stats = answer.json().get("message_stats") or {}
        queues = await client.get(f"/api/queues/{vhost}", params={"columns": QUEUE_COLUMNS})
        queues.raise_for_status()
    out = {
        "publish": int(stats.get("publish", 0)),
        "deliver": int(stats.get("deliver_get", 0)),
        "ack": int(stats.get("ack", 0)),
    }
    for queue in queues.json():  # each queue's share: what causes the messages per note
        qstats = queue.get("message_stats") or {}
        for what, field in (("publish", "publish"), ("deliver", "deliver_get")):
            out[f"{what}.{queue['name']}"] = int(qstats.get(field, 0))
    return out


QUEUE_COLUMNS = "name,message_stats.publish,message_stats.deliver_get"


async def _redis_calls(redis: aioredis.Redis) -> tuple[int, int]:
    """(all commands, script calls) the server ran since it started."""
    info = await redis.info("commandstats")
    calls = scripts = 0
    for name, stat in info.items():
        n = int(stat.get("calls", 0)) if isinstance(stat, dict) else 0
        calls += n
        if name in ("cmdstat_evalsha", "cmdstat_eval"):
            scripts += n
    return calls, scripts


async def _pg_transactions(settings: Settings) -> int:
    import asyncpg

    conn = await asyncpg.connect(settings.database_url)
    try:
        row = await conn.fetchrow(
            "SELECT xact_commit + xact_rollback AS n FROM pg_stat_database"
            " WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    return int(row["n"]) if row else 0


async def _bucket(settings: Settings) -> tuple[int, int]:
    """Objects and bytes in the run's bucket (Fila writes one object per voice note)."""
    count = size = 0
    async with s3.client(settings) as client:
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=settings.s3_bucket):
            for obj in page.get("Contents", []):
                count += 1
                size += int(obj.get("Size", 0))
    return count, size
