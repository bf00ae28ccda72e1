"""A capacity plan from measured per-note costs: workers, RabbitMQ, Redis, S3, webhooks.

Every figure is arithmetic on what `fila bench` measured on one machine (`bench.json`): the
cost of one delivered voice note at each engine, each role's idle CPU, and each engine's raw
ceiling. The assumptions the arithmetic needs are named in `ASSUMPTIONS` and printed with
the plan, so an operator can disagree with one and see what follows.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

MAX_RATE_PER_INSTANCE = 60.0
"""Voice notes a minute one WhatsApp number can plausibly receive; above is not a real load."""
HEADROOM = 0.7
"""Plan each core, shard and node to at most this share of its measured ceiling."""
BACKLOG_MINUTES = 60.0
"""How long an outage downstream may last while RabbitMQ holds the backlog (1 h: the TTL)."""
OPUS_BYTES_PER_SECOND = 2000.0
"""A WhatsApp voice note is Opus at about 16 kbit/s."""
S3_GETS_PER_NOTE = 1.0
"""The receiver fetches each audio URL once."""
REDIS_OPS_PER_SHARD = 80_000.0
"""Commands a second one Redis shard serves (a common figure for small commands on one core)."""

ASSUMPTIONS = [
    f"headroom: every core, shard and node planned at ≤ {HEADROOM:.0%} of its measured ceiling",
    "one worker process uses at most one core (Python, one event loop)",
    f"RabbitMQ backlog tolerance {BACKLOG_MINUTES:g} min (global.messages' TTL)",
    "each queue is one queue: its leader carries all of it, whatever the cluster size; the"
    " busiest queue's publishes are set against the measured publish ceiling",
    f"one Redis shard ≈ {REDIS_OPS_PER_SHARD:,.0f} commands/s; the {{bucket}} slot (every"
    " admission) lives on one shard, so its script calls must fit one shard's measured ceiling",
    "Redis commands: a fixed rate measured with no load (heartbeats and polls of the bench's"
    " processes), plus a cost per note",
    f"S3: {S3_GETS_PER_NOTE:g} GET per note by the receiver; audio at"
    f" {OPUS_BYTES_PER_SECOND / 1000:g} kB/s when --audio-seconds is given,"
    " else the measured object size",
    "costs per delivered voice note at the measured event mix (non-audio and filtered events"
    " included in the cost of the notes they came with)",
    "PostgreSQL is off the hot path (configuration and history only)",
]


class Costs(msgspec.Struct, kw_only=True):
    """What one delivered voice note costs, and what each role costs doing nothing."""

    cpuMsPerNote: dict[str, float]
    """Role → CPU milliseconds per delivered note, idle cost removed."""
    idleCoresPerProcess: dict[str, float]
    amqpPublishPerNote: float
    amqpDeliverPerNote: float
    amqpAckPerNote: float
    redisCommandsPerNote: float
    """Commands per note above the fixed rate below."""
    redisScriptsPerNote: float
    s3PutsPerNote: float
    s3BytesPerNote: float
    webhookPostsPerNote: float
    webhookBytesPerNote: float
    pgTransactionsPerNote: float
    redisCommandsFixedPerSecond: float = 0.0
    """Commands a second with no note in flight (heartbeats, polls, timers): spread over the
    notes, this fixed part made a note look dearer at 6 notes a second than at 60."""
    amqpPublishPerNoteByQueue: dict[str, float] = {}
    """Queue → publishes into it per note: what causes the RabbitMQ traffic (events in,
    voice notes out, monitoring, dead letters), and the load on each queue's leader."""


class Ceilings(msgspec.Struct, kw_only=True):
    """Raw ceilings of one engine each, measured alone on the bench machine."""

    amqpPublishPerSecond: float
    redisScriptsPerSecond: float
    s3PutsPerSecond: float
    webhookPostsPerSecond: float


class Line(msgspec.Struct, kw_only=True):
    part: str
    figure: str
    value: float
    unit: str
    how: str
    """The arithmetic, written out."""


class Plan(msgspec.Struct, kw_only=True):
    instances: int
    ratePerInstancePerMinute: float
    notesPerSecond: float
    lines: list[Line]
    firstToSaturate: str
    utilisation: dict[str, float]
    """Share of its single-node ceiling each engine reaches (1.0 = at the ceiling)."""
    assumptions: list[str]


class CapacityError(ValueError):
    """A flag with a value no plan can be made for; names the flag."""


def check(instances: int, rate: float, audio_seconds: float | None, retention_days: int) -> None:
    if instances < 1:
        raise CapacityError(f"--instances must be at least 1 (got {instances})")
    if not 0 < rate <= MAX_RATE_PER_INSTANCE:
        raise CapacityError(
            f"--rate must be above 0 and at most {MAX_RATE_PER_INSTANCE:g} voice notes a minute"
            f" per instance (got {rate:g})"
        )
    if audio_seconds is not None and not 0 < audio_seconds <= 7200:
        raise CapacityError(
            f"--audio-seconds must be above 0 and at most 7200 (got {audio_seconds:g})"
        )
    if not 1 <= retention_days <= 36500:
        raise CapacityError(f"--retention-days must be 1 to 36500 (got {retention_days})")


def plan(
    costs: Costs,
    ceilings: Ceilings,
    *,
    instances: int,
    rate: float,
    audio_seconds: float | None = None,
    retention_days: int = 7,
) -> Plan:
    """The plan for `instances` each receiving `rate` voice notes a minute."""
    check(instances, rate, audio_seconds, retention_days)
    notes = instances * rate / 60.0
    lines: list[Line] = []

    def add(part: str, figure: str, value: float, unit: str, how: str) -> float:
        lines.append(Line(part=part, figure=figure, value=value, unit=unit, how=how))
        return value

    for role in ("ingest", "delivery", "controlplane"):
        ms = costs.cpuMsPerNote.get(role, 0.0)
        idle = costs.idleCoresPerProcess.get(role, 0.0)
        busy = add(role, "cores busy", notes * ms / 1000.0, "cores", f"{notes:g}/s × {ms:g} ms")
        procs = 1 if role == "controlplane" else max(1, math.ceil(busy / (HEADROOM - idle)))
        add(
            role,
            "processes",
            procs,
            "",
            f"⌈{busy:.3g} ÷ ({HEADROOM:g} − idle {idle:g})⌉"
            if role != "controlplane"
            else "one (replicas for availability, not load)",
        )
        add(role, "cores", busy + procs * idle, "cores", f"{busy:.3g} + {procs} × idle {idle:g}")

    publish = add(
        "rabbitmq",
        "publishes",
        notes * costs.amqpPublishPerNote,
        "/s",
        f"{notes:g}/s × {costs.amqpPublishPerNote:g}",
    )
    by_queue = {  # without a split (an older bench.json) all of it counts as one queue
        queue: add("rabbitmq", f"publishes to {queue}", notes * per, "/s", f"{notes:g}/s × {per:g}")
        for queue, per in sorted(costs.amqpPublishPerNoteByQueue.items(), key=lambda kv: -kv[1])
        if per > 0
    } or {"all queues": publish}
    busiest = max(by_queue.items(), key=lambda kv: kv[1])
    add(
        "rabbitmq",
        "deliveries",
        notes * costs.amqpDeliverPerNote,
        "/s",
        f"{notes:g}/s × {costs.amqpDeliverPerNote:g}",
    )
    add(
        "rabbitmq",
        "acks",
        notes * costs.amqpAckPerNote,
        "/s",
        f"{notes:g}/s × {costs.amqpAckPerNote:g}",
    )
    add(
        "rabbitmq",
        "backlog held",
        notes * BACKLOG_MINUTES * 60,
        "messages",
        f"{notes:g}/s × {BACKLOG_MINUTES:g} min",
    )
    fixed = costs.redisCommandsFixedPerSecond
    commands = add(
        "redis",
        "commands",
        fixed + notes * costs.redisCommandsPerNote,
        "/s",
        f"{fixed:g} + {notes:g}/s × {costs.redisCommandsPerNote:g}",
    )
    scripts = add(
        "redis",
        "admission scripts ({bucket} slot)",
        notes * costs.redisScriptsPerNote,
        "/s",
        f"{notes:g}/s × {costs.redisScriptsPerNote:g}",
    )
    add(
        "redis",
        "shards",
        max(1, math.ceil(commands / (REDIS_OPS_PER_SHARD * HEADROOM))),
        "",
        f"⌈{commands:.4g} ÷ ({REDIS_OPS_PER_SHARD:g} × {HEADROOM:g})⌉",
    )
    puts = add(
        "s3", "PUTs", notes * costs.s3PutsPerNote, "/s", f"{notes:g}/s × {costs.s3PutsPerNote:g}"
    )
    add("s3", "GETs", notes * S3_GETS_PER_NOTE, "/s", f"{notes:g}/s × {S3_GETS_PER_NOTE:g}")
    size = (
        audio_seconds * OPUS_BYTES_PER_SECOND
        if audio_seconds is not None
        else costs.s3BytesPerNote / max(costs.s3PutsPerNote, 1e-9)
    )
    add(
        "s3",
        "storage",
        notes * 86400 * retention_days * size / 1e9,
        "GB",
        f"{notes:g}/s × 86,400 × {retention_days} d × {size:,.0f} B",
    )
    posts = add(
        "webhooks",
        "POSTs",
        notes * costs.webhookPostsPerNote,
        "/s",
        f"{notes:g}/s × {costs.webhookPostsPerNote:g}",
    )
    add(
        "webhooks",
        "egress",
        notes * costs.webhookBytesPerNote * 8 / 1e6,
        "Mbit/s",
        f"{notes:g}/s × {costs.webhookBytesPerNote:,.0f} B × 8",
    )
    add(
        "postgresql",
        "transactions",
        notes * costs.pgTransactionsPerNote,
        "/s",
        f"{notes:g}/s × {costs.pgTransactionsPerNote:g}",
    )

    utilisation = {
        f"rabbitmq ({busiest[0]} leader)": busiest[1] / max(ceilings.amqpPublishPerSecond, 1e-9),
        "redis ({bucket} slot)": scripts / max(ceilings.redisScriptsPerSecond, 1e-9),
        "s3": puts / max(ceilings.s3PutsPerSecond, 1e-9),
        "webhook receiver": posts / max(ceilings.webhookPostsPerSecond, 1e-9),
    }
    first = max(utilisation, key=lambda k: utilisation[k])
    return Plan(
        instances=instances,
        ratePerInstancePerMinute=rate,
        notesPerSecond=notes,
        lines=lines,
        firstToSaturate=first,
        utilisation={k: round(v, 4) for k, v in utilisation.items()},
        assumptions=ASSUMPTIONS,
    )


def from_bench(report: dict[str, Any]) -> tuple[Costs, Ceilings]:
    """The costs and ceilings a `bench.json` recorded (its `capacity` section)."""
    section = report.get("capacity") or {}
    if "costs" not in section or "ceilings" not in section:
        raise CapacityError(
            "--bench: the file has no capacity section; run `fila bench` (it writes one)"
        )
    return (
        msgspec.convert(section["costs"], Costs),
        msgspec.convert(section["ceilings"], Ceilings),
    )


def print_plan(console: Console, result: Plan, source: str) -> None:
    """The plan as a table, its arithmetic beside each figure, then the assumptions."""
    table = Table(
        "part",
        "figure",
        "value",
        "how",
        title=(
            f"{result.instances:,} instances × {result.ratePerInstancePerMinute:g} voice notes/min"
            f" = {result.notesPerSecond:,.2f} notes/s (costs from {source})"
        ),
    )
    for line in result.lines:
        value = f"{line.value:,.0f}" if line.value >= 100 else f"{line.value:,.3g}"
        table.add_row(line.part, line.figure, f"{value} {line.unit}".strip(), line.how)
    console.print(table)
    used = ", ".join(f"{k} {v:.1%}" for k, v in result.utilisation.items())
    console.print(f"share of each single-node ceiling: {used}")
    console.print(f"first to saturate: [b]{result.firstToSaturate}[/b]")
    console.print("assumptions:")
    for text in result.assumptions:
        console.print(f"  - {text}", highlight=False)
