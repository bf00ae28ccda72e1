"""The bench's report: figures, targets, the capacity model's check, and the printed tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from simulator import capacity, meter, rawhops


class TargetCheck(msgspec.Struct, kw_only=True):
    name: str
    value: float | None
    target: str
    met: bool | None


class BenchReport(msgspec.Struct, kw_only=True):
    startedAt: str
    mode: str
    machine: dict[str, Any]
    rawHops: list[rawhops.HopResult] = msgspec.field(default_factory=list)
    reference: dict[str, Any] = msgspec.field(default_factory=dict)
    endToEnd: dict[str, Any] = msgspec.field(default_factory=dict)
    limiter: dict[str, Any] = msgspec.field(default_factory=dict)
    fairness: dict[str, Any] = msgspec.field(default_factory=dict)
    propagation: dict[str, Any] = msgspec.field(default_factory=dict)
    scale: dict[str, Any] = msgspec.field(default_factory=dict)
    capacity: dict[str, Any] = msgspec.field(default_factory=dict)
    """Per-note costs, idle CPU and ceilings (read by `fila capacity`), and the model's check."""
    clusters: dict[str, Any] = msgspec.field(default_factory=dict)
    """`--cluster`: the same short parts on a local Redis or RabbitMQ cluster, side by side."""
    targets: list[TargetCheck] = msgspec.field(default_factory=list)
    errors: list[str] = msgspec.field(default_factory=list)


def jain(values: list[float]) -> float | None:
    """Jain's fairness index: 1 when every value is equal, 1/n when one takes everything."""
    if not values or not any(values):
        return None
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


ROLES = ("ingest", "delivery", "controlplane")


def costs_of(
    used: meter.Usage,
    idle: dict[str, float],
    procs: dict[str, int],
    redis_fixed: float = 0.0,
) -> capacity.Costs:
    """Per-note costs of one measured part, each role's idle CPU and Redis's idle commands
    (`redis_fixed` a second) taken out first."""
    per = used.perNote
    cpu: dict[str, float] = {}
    for role in ROLES:
        busy = used.totals[f"cpuSeconds.{role}"] - idle[role] * procs[role] * used.seconds
        cpu[role] = round(max(0.0, busy) / max(used.notes, 1) * 1000, 3)
    # The control plane does no per-note work when events come by RabbitMQ: its cost is what
    # it used over the part (polls, cleanup, mirrors), whatever the rate.
    cpu["controlplane"] = 0.0
    fixed = {**idle, "controlplane": round(used.cpuCores.get("controlplane", 0.0), 4)}
    return capacity.Costs(
        cpuMsPerNote=cpu,
        idleCoresPerProcess=fixed,
        amqpPublishPerNote=per["amqpPublish"],
        amqpDeliverPerNote=per["amqpDeliver"],
        amqpAckPerNote=per["amqpAck"],
        redisCommandsPerNote=round(
            max(0.0, used.totals["redisCommands"] - redis_fixed * used.seconds)
            / max(used.notes, 1),
            4,
        ),
        redisCommandsFixedPerSecond=round(redis_fixed, 2),
        redisScriptsPerNote=per["redisScripts"],
        s3PutsPerNote=per["s3Puts"],
        s3BytesPerNote=per["s3Bytes"],
        webhookPostsPerNote=per["webhookPosts"],
        webhookBytesPerNote=per["webhookBytes"],
        pgTransactionsPerNote=per["pgTransactions"],
        amqpPublishPerNoteByQueue={
            k.split(".", 1)[1]: v for k, v in per.items() if k.startswith("amqpPublish.")
        },
    )


def predicted_vs_measured(
    costs: capacity.Costs,
    used: meter.Usage,
    procs: dict[str, int],
    source: meter.Usage | None = None,
) -> dict[str, dict[str, float]]:
    """What costs measured in `source` predict for this part, beside what it measured."""
    rate = used.notes / used.seconds
    out: dict[str, dict[str, float]] = {}
    for role in ROLES:
        predicted = (
            rate * costs.cpuMsPerNote[role] / 1000 + costs.idleCoresPerProcess[role] * procs[role]
        )
        measured = used.totals[f"cpuSeconds.{role}"] / used.seconds
        out[f"cores {role}"] = {"predicted": predicted, "measured": measured}
    for name, fixed, per, total in (
        ("amqp publishes/s", 0.0, costs.amqpPublishPerNote, "amqpPublish"),
        ("amqp deliveries/s", 0.0, costs.amqpDeliverPerNote, "amqpDeliver"),
        (
            "redis commands/s",
            costs.redisCommandsFixedPerSecond,
            costs.redisCommandsPerNote,
            "redisCommands",
        ),
        ("s3 PUTs/s", 0.0, costs.s3PutsPerNote, "s3Puts"),
        ("webhook POSTs/s", 0.0, costs.webhookPostsPerNote, "webhookPosts"),
    ):
        predicted = fixed + rate * per
        out[name] = {"predicted": predicted, "measured": used.totals[total] / used.seconds}
    for queue, per in costs.amqpPublishPerNoteByQueue.items():
        count = used.totals.get(f"amqpPublish.{queue}", 0.0)
        seen = source.totals.get(f"amqpPublish.{queue}", 0.0) if source else count
        if min(count, seen) >= QUEUE_SAMPLE:
            out[f"  publishes/s to {queue}"] = {
                "predicted": rate * per,
                "measured": count / used.seconds,
            }
    for name, row in out.items():
        p, m = row["predicted"], row["measured"]
        row["errorPercent"] = round((p - m) / m * 100, 1) if m else 0.0
        negligible = name.startswith("cores") and max(p, m) < NEGLIGIBLE_CORES
        row["agrees"] = float(abs(row["errorPercent"]) <= MODEL_TOLERANCE_PERCENT or negligible)
        row["predicted"], row["measured"] = round(p, 3), round(m, 3)
    return out


QUEUE_SAMPLE = 100
"""A queue is checked on its own when both parts saw this many messages in it: a count of n
carries a sampling error of about 1/√n (10 % here), and a few dozen dead letters from the
event mix would be a coin toss against ±20 %."""
MODEL_TOLERANCE_PERCENT = 20.0
"""How far the model may miss a measured figure of the same run."""
NEGLIGIBLE_CORES = 0.01
"""CPU figures under 1 % of a core on both sides (the control plane when ingest comes by
RabbitMQ: a few ms a second, a handful of /proc ticks in a part) agree by being negligible:
a relative error there measures the clock tick, not the model."""


def capacity_section(
    report: BenchReport,
    readings: dict[str, meter.Reading],
    idle: dict[str, float],
    workers: int,
) -> dict[str, Any]:
    """Costs from the reference and 5,000-instance parts; each predicts the other."""
    procs = {"ingest": workers, "delivery": workers, "controlplane": 1}
    hops = {h.hop: h.perSecond for h in report.rawHops}
    ceilings = capacity.Ceilings(
        amqpPublishPerSecond=hops.get("amqp publish (confirms)", 0.0),
        redisScriptsPerSecond=hops.get("redis token bucket", 0.0),
        s3PutsPerSecond=hops.get("s3 PutObject 32 KB", 0.0),
        webhookPostsPerSecond=hops.get("http POST to receiver", 0.0),
    )
    used: dict[str, meter.Usage] = {}
    for part, delivered in (
        ("reference", report.reference.get("delivered")),
        ("scale", report.scale.get("delivered")),
    ):
        if f"{part}.end" in readings and delivered:
            start, end = readings[f"{part}.start"], readings[f"{part}.end"]
            used[part] = meter.usage(start, end, int(delivered))
    if not used:
        raise RuntimeError("neither the reference nor the scale part was measured")
    quiet = None
    if "idle.start" in readings and "idle.end" in readings:
        quiet = meter.usage(readings["idle.start"], readings["idle.end"], 0)
    redis_fixed = quiet.totals["redisCommands"] / quiet.seconds if quiet else 0.0
    costs = {part: costs_of(u, idle, procs, redis_fixed) for part, u in used.items()}
    checks = {}
    if len(used) == 2:
        checks["reference, predicted from the scale part"] = predicted_vs_measured(
            costs["scale"], used["reference"], procs, used["scale"]
        )
        checks["scale, predicted from the reference part"] = predicted_vs_measured(
            costs["reference"], used["scale"], procs, used["reference"]
        )
    chosen = costs.get("scale") or costs["reference"]
    return {
        "costs": msgspec.to_builtins(chosen),
        "costsFrom": "scale" if "scale" in costs else "reference",
        "ceilings": msgspec.to_builtins(ceilings),
        "usage": {part: msgspec.to_builtins(u) for part, u in used.items()},
        "idle": msgspec.to_builtins(quiet) if quiet else None,
        "costsByPart": {part: msgspec.to_builtins(c) for part, c in costs.items()},
        "checks": checks,
    }


NOTE_HOPS = (
    ("amqp consume (acks)", "consume from fila.ingest", 1.0),
    ("redis token bucket", "the bucket call", 1.0),
    ("http POST to receiver", "the media fetch (one HTTP round trip)", 2 / 3),
    ("s3 PutObject 32 KB", "the S3 PUT", 1.0),
    ("amqp publish (confirms)", "the publish to global.messages", 1.0),
    ("amqp consume (acks)", "the consume from global.messages", 1.0),
    ("http POST to receiver", "the webhook POST", 1.0),
)
"""The hops one voice note passes, with how many of them pass it (two of the three voice kinds
of the bench's mix fetch their media; inline base64 does not)."""


def composed_ceiling(report: BenchReport) -> dict[str, Any]:
    """1 / Σ(share / ceiling) over one note's hops: the limit when they all share the cores."""
    hops = {h.hop: h.perSecond for h in report.rawHops}
    if not all(hops.get(name) for name, _, _ in NOTE_HOPS):
        return {}
    seconds = sum(share / hops[name] for name, _, share in NOTE_HOPS)
    without = sum(share / hops[name] for name, what, share in NOTE_HOPS if "media" not in what)
    ceiling = 1 / seconds
    tput = report.endToEnd.get("throughputPerSecond")
    return {
        "hops": [
            {"hop": what, "ceilingPerSecond": hops[name], "perNote": round(share, 3)}
            for name, what, share in NOTE_HOPS
        ],
        "perSecond": round(ceiling, 1),
        "withoutMediaFetchPerSecond": round(1 / without, 1),
        "ratio": round(tput / ceiling, 3) if tput else None,
        **machine_cpu_per_note(report),
    }


def machine_cpu_per_note(report: BenchReport) -> dict[str, float]:
    """The machine's CPU for one note: its hops, each as busy as it kept the machine when
    measured alone, against the e2e run's. Wall-time ceilings hide a hop that idles a core."""
    cores = {h.hop: h.machineCores for h in report.rawHops}
    e2e = report.endToEnd
    whole = (e2e.get("coresUsed") or {}).get("whole machine")
    tput = e2e.get("throughputPerSecond")
    per_second = {h.hop: h.perSecond for h in report.rawHops}
    if not all(cores.get(name) for name, _, _ in NOTE_HOPS) or not whole or not tput:
        return {}
    hops_ms = sum(share * cores[name] / per_second[name] for name, _, share in NOTE_HOPS) * 1000
    return {
        "hopsMachineMsPerNote": round(hops_ms, 2),
        "endToEndMachineMsPerNote": round(whole / tput * 1000, 2),
    }


def cpu_per_note(e2e: dict[str, Any]) -> dict[str, float]:
    """Fila's own CPU milliseconds per delivered note, by role, over the throughput run."""
    cores, window, delivered = (
        e2e.get("coresUsed"),
        e2e.get("cpuWindowSeconds"),
        e2e.get("delivered"),
    )
    if not cores or not window or not delivered:
        return {}
    out: dict[str, float] = {}
    for role in ("ingest", "delivery"):
        busy = sum(v for k, v in cores.items() if k.split("-")[0] == role)
        out[role] = round(busy * window * 1000 / delivered, 2)
    out["ingest+delivery"] = round(out["ingest"] + out["delivery"], 2)
    return out


def _check(
    name: str, value: float | None, target: str, met: Callable[[float], bool]
) -> TargetCheck:
    """A target and the figure against it: not judged (met None) when the figure is missing."""
    return TargetCheck(
        name=name, value=value, target=target, met=None if value is None else met(value)
    )


def check_targets(report: BenchReport) -> list[TargetCheck]:
    checks: list[TargetCheck] = []
    slowest = min((h.perSecond for h in report.rawHops), default=0.0)
    tput = report.endToEnd.get("throughputPerSecond")
    ratio = (tput / slowest) if tput and slowest else None
    report.endToEnd["slowestRawHopPerSecond"] = slowest
    report.endToEnd["ratioToSlowestHop"] = round(ratio, 3) if ratio is not None else None
    checks.append(
        _check(
            "e2e throughput / slowest raw hop (each hop measured alone)",
            ratio,
            "≥ 0.6",
            lambda v: v >= 0.6,
        )
    )
    composed = composed_ceiling(report)
    report.endToEnd["composedCeiling"] = composed
    to_composed = composed.get("ratio")
    checks.append(
        _check("e2e throughput / composed ceiling", to_composed, "≥ 0.9", lambda v: v >= 0.9)
    )
    per_note = cpu_per_note(report.endToEnd)
    report.endToEnd["cpuMsPerNote"] = per_note
    both = per_note.get("ingest+delivery")
    checks.append(
        _check(
            "Fila CPU per delivered note, ingest + delivery (ms)", both, "≤ 5.5", lambda v: v <= 5.5
        )
    )
    p99 = (report.reference.get("latencyMs") or {}).get("p99")
    checks.append(_check("p99 latency at reference load (ms)", p99, "< 150", lambda v: v < 150))
    err = report.limiter.get("errorPercent")
    checks.append(_check("limiter error (%)", err, "≤ 0.5", lambda v: v <= 0.5))
    prop = report.propagation.get("p99Ms")
    checks.append(_check("config propagation p99 (ms)", prop, "< 100", lambda v: v < 100))
    return checks


def scale_rows(sc: dict[str, Any]) -> list[tuple[str, Any]]:
    """The 5,000-instance run: delivery, latency, Redis per instance, fleet pages."""
    lat = sc.get("latencyMs") or {}
    page = sc.get("fleetPage") or {}
    return [
        ("scale: delivered / voice notes", _pair(sc, "delivered", "voiceNotes")),
        ("scale: latency p50 / p99 (ms)", f"{_fmt(lat.get('p50'))} / {_fmt(lat.get('p99'))}"),
        ("scale: Redis bytes per instance", sc.get("redisBytesPerInstance")),
        ("scale: fleet page p50 / p99 (ms)", _pair(page, "p50Ms", "p99Ms")),
        ("scale: fleet page bytes (max)", page.get("maxBytes")),
    ]


def _triple(cpu: dict[str, float]) -> str:
    return " / ".join(_fmt(cpu.get(k)) for k in ("ingest", "delivery", "ingest+delivery"))


def _pair(d: dict[str, Any], a: str, b: str) -> str:
    return f"{d.get(a, '—')} / {d.get(b, '—')}"


def fairness_rows(f: dict[str, Any]) -> list[tuple[str, Any]]:
    """The fairness figures: burst, contention, weights, end to end."""
    burst, con, wts, e2e = (f.get(k) or {} for k in ("burst", "contention", "weights", "endToEnd"))
    return [
        ("fairness: burst admitted / sent", _pair(burst, "admitted", "sent")),
        ("fairness: worst normal share", con.get("worstNormalShare")),
        ("fairness: Jain index over normals", con.get("jainNormals")),
        ("fairness: hot admitted / sent", _pair(con, "hotAdmitted", "hotSent")),
        ("fairness: admitted / capacity + refill·t", _pair(con, "admitted", "expected")),
        ("fairness: token conservation error (%)", con.get("conservationErrorPercent")),
        ("fairness: weight 3 ÷ weight 1", wts.get("ratio")),
        ("fairness e2e: worst other share", e2e.get("worstOtherShare")),
        ("fairness e2e: Jain index over the others", e2e.get("jainOthers")),
        ("fairness e2e: hot sent / delivered", _pair(e2e, "hotSent", "hotDelivered")),
    ]


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def print_report(console: Console, report: BenchReport) -> None:
    hops = Table(
        "raw hop", "ops/s", "ops", "concurrency", "errors", "machine cores", title="Raw ceilings"
    )
    for h in report.rawHops:
        hops.add_row(
            h.hop,
            _fmt(h.perSecond),
            _fmt(h.operations),
            str(h.concurrency),
            str(h.errors),
            _fmt(h.machineCores),
        )
    console.print(hops)
    figures = Table("measure", "value", title=f"Fila ({report.mode})")
    ref = report.reference
    lat = ref.get("latencyMs") or {}
    e2e = report.endToEnd
    composed = e2e.get("composedCeiling") or {}
    rows: list[tuple[str, Any]] = [
        (
            "reference load: sent / voice notes / delivered",
            f"{ref.get('sent', '—')} / {ref.get('voiceNotes', '—')} / {ref.get('delivered', '—')}",
        ),
        (
            "reference latency p50 / p95 / p99 (ms)",
            f"{_fmt(lat.get('p50'))} / {_fmt(lat.get('p95'))} / {_fmt(lat.get('p99'))}",
        ),
        ("e2e offered (events/s)", e2e.get("offeredPerSecond")),
        ("e2e delivered / sent", f"{e2e.get('delivered', '—')} / {e2e.get('sent', '—')}"),
        ("e2e throughput (deliveries/s)", e2e.get("throughputPerSecond")),
        ("slowest raw hop (ops/s)", e2e.get("slowestRawHopPerSecond")),
        ("ratio to slowest raw hop (hops measured alone)", e2e.get("ratioToSlowestHop")),
        ("composed ceiling of one note's hops (/s)", composed.get("perSecond")),
        ("  without the media fetch (/s)", composed.get("withoutMediaFetchPerSecond")),
        ("ratio to the composed ceiling", composed.get("ratio")),
        (
            "machine CPU per note: its hops alone / e2e (ms)",
            _pair(composed, "hopsMachineMsPerNote", "endToEndMachineMsPerNote"),
        ),
        ("CPU per note: ingest / delivery / both (ms)", _triple(e2e.get("cpuMsPerNote") or {})),
        ("machine speed: reference loop, median (ms)", _fmt(e2e.get("referenceLoopMs"))),
        (
            "limiter admitted / expected",
            f"{report.limiter.get('admitted', '—')} / {report.limiter.get('expected', '—')}",
        ),
        ("limiter error (%)", report.limiter.get("errorPercent")),
        *fairness_rows(report.fairness),
        *scale_rows(report.scale),
        (
            "propagation p50 / p99 (ms)",
            f"{_fmt(report.propagation.get('p50Ms'))} / {_fmt(report.propagation.get('p99Ms'))}",
        ),
    ]
    for name, value in rows:
        figures.add_row(name, value if isinstance(value, str) else _fmt(value))
    console.print(figures)
    for part, title in (
        (report.endToEnd, "CPU during the e2e throughput run"),
        (report.scale, "CPU during the 5,000-instance run"),
    ):
        cores = part.get("coresUsed") or {}
        if cores:
            cpu = Table("process tree", "cores busy", title=title)
            for name, share in sorted(cores.items(), key=lambda kv: -kv[1]):
                cpu.add_row(name, f"{share:.2f}")
            console.print(cpu)
    for name, rows_ in (report.capacity.get("checks") or {}).items():
        check = Table("figure", "predicted", "measured", "error", title=f"capacity model: {name}")
        for figure, row in rows_.items():
            err = row["errorPercent"]
            verdict = "agrees" if row.get("agrees", abs(err) <= MODEL_TOLERANCE_PERCENT) else "MISS"
            if verdict == "agrees" and abs(err) > MODEL_TOLERANCE_PERCENT:
                verdict = f"negligible (< {NEGLIGIBLE_CORES:g} cores)"
            colour = "green" if verdict != "MISS" else "red"
            check.add_row(
                figure,
                f"{row['predicted']:g}",
                f"{row['measured']:g}",
                f"[{colour}]{err:+.1f} % {verdict}",
            )
        console.print(check)
    targets = Table("target", "measured", "wanted", "met", title="Targets")
    for t in report.targets:
        verdict = (
            "[green]yes[/green]"
            if t.met
            else ("[red]MISSED[/red]" if t.met is False else "not measured")
        )
        targets.add_row(t.name, _fmt(t.value), t.target, verdict)
    console.print(targets)
    for error in report.errors:
        console.print(f"[red]error:[/red] {error}")
