"""`fila bench`'s run: each part in turn on isolated namespaces, with a progress bar."""

from __future__ import annotations

import os
import platform
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fila.settings import Settings
from simulator import rawhops
from simulator.bench import clusters, control, fairshare, scale, throughput
from simulator.bench.harness import FULL, QUICK, Bench
from simulator.bench.report import BenchReport, capacity_section, check_targets
from simulator.benchenv import isolated
from simulator.evolution import EvolutionStub

PARTS = frozenset(("hops", "reference", "endToEnd", "fairness", "propagation", "limiter", "scale"))
"""What `--only` may name: the raw hop ceilings and each end-to-end part."""


async def run_bench(
    base: Settings,
    *,
    quick: bool,
    workers: int,
    limiter_procs: int,
    console: Console,
    cluster: str = "",
    only: frozenset[str] = frozenset(),
) -> BenchReport:
    profile = QUICK if quick else FULL

    def wanted(part: str) -> bool:
        return not only or part in only

    report = BenchReport(
        startedAt=datetime.now(UTC).isoformat(timespec="seconds"),
        mode="quick" if quick else "full",
        machine={
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "workers": f"{workers} ingest + {workers} delivery",
        },
    )
    steps: list[tuple[str, str]] = [
        ("namespaces", "isolated vhost, prefix, bucket, database"),
        ("receiver", "webhook receiver process"),
        ("amqp", "raw: aio-pika publish/consume"),
        ("redis", "raw: token bucket"),
        ("s3", "raw: S3 PutObject 32 KB"),
        ("http", "raw: httpx POST"),
        ("fleet", "control plane + workers"),
        ("reference", "e2e at reference load"),
        ("saturation", "e2e throughput"),
        ("fairness", "fairness (one instance at 10×)"),
        ("propagation", "config propagation"),
        ("limiter", "limiter accuracy"),
        ("scale", "5,000 instances at 10× the reference"),
    ]
    with Progress(
        TextColumn("[bold]bench[/bold] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(steps[0][1], total=len(steps))

        def step(n: int) -> None:
            bar.update(task, completed=n, description=steps[min(n, len(steps) - 1)][1])

        async with isolated(base) as settings:
            step(1)
            bench = Bench(settings, profile, workers, limiter_procs)
            stub_port = int(settings.evolution_url.rsplit(":", 1)[1])
            stub = EvolutionStub(settings.evolution_api_key, stub_port)
            try:
                await bench.start_receiver()
                step(2)
                hops: list[tuple[int, Callable[[], Awaitable[Any]]]] = [
                    (3, lambda: rawhops.amqp_publish_consume(settings, profile.hop_seconds)),
                    (4, lambda: rawhops.redis_token_bucket(settings, profile.hop_seconds)),
                    (5, lambda: rawhops.s3_put(settings, profile.hop_seconds)),
                    (6, lambda: rawhops.http_post(bench.receiver_url, profile.hop_seconds)),
                ]
                for n, hop in hops:
                    if not wanted("hops"):
                        step(n)
                        continue
                    result = await hop()
                    report.rawHops.extend(result if isinstance(result, list) else [result])
                    step(n)
                await bench.start_fleet()
                idle = await bench.idle(5.0)
                step(7)

                async def in_process(part: Callable[[EvolutionStub], Awaitable[Any]]) -> Any:
                    async with stub:
                        return await part(stub)

                parts: list[tuple[int, str, Callable[[], Awaitable[Any]]]] = [
                    (8, "reference", lambda: in_process(lambda s: throughput.reference(bench, s))),
                    (9, "endToEnd", lambda: throughput.saturation(bench, stub_port)),
                    (10, "fairness", lambda: in_process(lambda s: fairshare.fairness(bench, s))),
                    (11, "propagation", lambda: control.propagation(bench)),
                    (12, "limiter", lambda: control.limiter(bench)),
                    (13, "scale", lambda: scale.scale(bench, stub_port)),
                ]
                for n, name, part in parts:
                    if not wanted(name):
                        step(n)
                        continue
                    try:
                        setattr(report, name, await part())
                    except Exception as exc:
                        report.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                    step(n)
                try:
                    if only and not {"reference", "scale"} & only:
                        raise RuntimeError("not computed: --only ran neither reference nor scale")
                    report.capacity = capacity_section(report, bench.readings, idle, workers)
                except Exception as exc:
                    report.errors.append(f"capacity: {type(exc).__name__}: {exc}")
            finally:
                stopped = await bench.procs.stop_all()
                if bench.procs.killed:
                    report.errors.append(f"needed SIGKILL: {', '.join(bench.procs.killed)}")
                report.machine["exitCodes"] = stopped
                await bench.close()
    if cluster:  # after the single-node fleet stopped, so the two never share the cores
        report.clusters = await clusters.compare(base, report, cluster, profile, workers, console)
    report.targets = check_targets(report)
    return report
