"""`fila bench --cluster`: the same short parts again on a local Redis Cluster or RabbitMQ cluster
started here on ports of its own, side by side with the single node's figures of the same run.

Each cluster is wiped before (a run that died may have left one) and stopped and wiped after,
whatever happens; a lock file keeps two such runs from stopping each other's nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from fila.dev.rabbitcluster import LocalRabbitCluster
from fila.dev.services import LocalRedisCluster
from fila.settings import Settings
from simulator import rawhops
from simulator.bench import throughput
from simulator.bench.harness import Bench, Profile
from simulator.bench.report import BenchReport, _fmt
from simulator.benchenv import isolated
from simulator.evolution import EvolutionStub
from simulator.procs import ProcessGroup

CHOICES = ("redis", "rabbitmq", "both")
REDIS_PORTS = tuple(range(21460, 21466))
"""3 masters + 3 replicas (bus ports + 10000): apart from `fila services` (21400…) and the
Sentinel (21440…), the tests' blocks (21600…), so a bench never stops their nodes."""
RABBIT_PORTS = (21540, 21541, 21542)
"""AMQP ports (distribution on + 10, epmd on 21549): apart from `fila services` and the tests."""
PART_SECONDS = 20.0
"""No measured part of the comparison runs longer, whatever the main run's profile."""

Cluster = LocalRedisCluster | LocalRabbitCluster


def short(profile: Profile) -> Profile:
    """The main run's profile with each measured part capped, so the extra run stays short."""
    return msgspec.structs.replace(
        profile,
        hop_seconds=min(profile.hop_seconds, PART_SECONDS),
        reference_seconds=min(profile.reference_seconds, PART_SECONDS),
        saturation_seconds=min(profile.saturation_seconds, PART_SECONDS),
    )


class ClusterBench(Bench):
    """The bench's harness on a cluster: its nodes' CPU counted, no engine readings taken."""

    def __init__(
        self, settings: Settings, profile: Profile, workers: int, cluster: Cluster
    ) -> None:
        super().__init__(settings, profile, workers, 1)
        self.cluster = cluster
        self.procs = ProcessGroup(
            settings, Path(settings.data_dir) / "bench-logs" / f"cluster-{cluster.ports[0]}"
        )

    async def mark(self, key: str) -> None:
        """Skipped: the management API and INFO would count the single node, not the cluster."""

    def cpu_roots(self) -> dict[str, int]:
        roots = super().cpu_roots()
        for port in self.cluster.ports:
            pid = self.cluster.pid(port)
            if pid is not None:
                roots[f"cluster node {port}"] = pid
        return roots


@contextlib.contextmanager
def _exclusive(data_dir: str) -> Iterator[None]:
    """One `--cluster` run at a time on this data dir: each wipes its clusters' ports first."""
    path = Path(data_dir).resolve() / "bench-clusters.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RuntimeError(f"another `fila bench --cluster` holds {path}") from None
        yield


def _fresh_up(cluster: Cluster, say: Callable[[str], None]) -> None:
    cluster.down(wipe=True)  # ours from a run that died without its teardown
    cluster.up(report=say, timeout=240)


@contextlib.asynccontextmanager
async def brought_up(cluster: Cluster, say: Callable[[str], None]) -> AsyncIterator[None]:
    """The cluster started fresh, then stopped and wiped on exit, on error or cancel too."""
    with ThreadPoolExecutor(1) as pool:
        started = pool.submit(_fresh_up, cluster, say)
        try:
            await asyncio.wrap_future(started)
            yield
        finally:
            with contextlib.suppress(Exception):
                started.result()  # an `up` still going when cancelled ends before `down`
            cluster.down(wipe=True)


async def _segment(
    kind: str, base: Settings, profile: Profile, workers: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """One cluster's parts: raw limiter hop (Redis), reference load (RabbitMQ), saturation."""
    cluster: Cluster = (
        LocalRedisCluster(base, REDIS_PORTS)
        if kind == "redis"
        else LocalRabbitCluster(base, RABBIT_PORTS)
    )
    nodes = "3 masters + 3 replicas" if kind == "redis" else "3 nodes, quorum queues"
    out: dict[str, Any] = {
        "nodes": f"{nodes} on 127.0.0.1:{cluster.ports[0]}-{cluster.ports[-1]}",
        "env": cluster.env(),
        "errors": [],
    }
    clock = time.monotonic()
    say(f"{kind} cluster: starting {out['nodes']}")
    async with brought_up(cluster, say), isolated(base) as iso:
        out["startSeconds"] = round(time.monotonic() - clock, 1)
        settings = cluster.settings(iso)
        bench = ClusterBench(settings, profile, workers, cluster)
        stub_port = int(settings.evolution_url.rsplit(":", 1)[1])
        try:
            if kind == "redis":
                say(f"{kind} cluster: raw token bucket ({profile.hop_seconds:g} s)")
                hop = await rawhops.redis_token_bucket(settings, profile.hop_seconds)
                out["limiter"] = msgspec.to_builtins(hop)
            say(f"{kind} cluster: receiver, control plane, {workers} + {workers} workers")
            await bench.start_receiver()
            await bench.start_fleet()
            if kind == "rabbitmq":
                say(f"{kind} cluster: reference load ({profile.reference_seconds:g} s)")
                async with EvolutionStub(settings.evolution_api_key, stub_port) as stub:
                    out["reference"] = await throughput.reference(bench, stub)
            say(f"{kind} cluster: saturation ({profile.saturation_seconds:g} s)")
            out["endToEnd"] = await throughput.saturation(bench, stub_port)
        except Exception as exc:
            out["errors"].append(f"{type(exc).__name__}: {exc}")
        finally:
            await bench.procs.stop_all()
            await bench.close()
    out["seconds"] = round(time.monotonic() - clock, 1)
    say(f"{kind} cluster: stopped and wiped after {out['seconds']:g} s")
    return out


async def compare(
    base: Settings,
    report: BenchReport,
    which: str,
    profile: Profile,
    workers: int,
    console: Console,
) -> dict[str, Any]:
    """The `clusters` section: each chosen cluster's figures and the side-by-side rows."""
    if which not in CHOICES:
        raise ValueError(f"--cluster: one of {', '.join(CHOICES)}, not {which!r}")
    kinds = ["redis", "rabbitmq"] if which == "both" else [which]
    cut = short(profile)
    section: dict[str, Any] = {
        "profile": {
            "hopSeconds": cut.hop_seconds,
            "referenceSeconds": cut.reference_seconds,
            "saturationSeconds": cut.saturation_seconds,
            "singleNodeFrom": f"this run's {report.mode} parts",
        }
    }

    def say(line: str) -> None:
        console.print(f"[bold]bench[/bold] {line}")

    with _exclusive(base.data_dir):
        for kind in kinds:
            try:
                section[kind] = await _segment(kind, base, cut, workers, say)
            except Exception as exc:
                section[kind] = {"errors": [f"{type(exc).__name__}: {exc}"]}
            report.errors.extend(f"{kind} cluster: {e}" for e in section[kind]["errors"])
    section["rows"] = rows(report, section)
    return section


def _row(system: str, measure: str, single: Any, cluster: Any) -> dict[str, Any]:
    numbers = isinstance(single, int | float) and isinstance(cluster, int | float)
    ratio = round(cluster / single, 3) if numbers and single else None
    return {
        "system": system,
        "measure": measure,
        "single": single,
        "cluster": cluster,
        "clusterToSingle": ratio,
    }


def _delivered(e2e: dict[str, Any]) -> str | None:
    return f"{e2e['delivered']} / {e2e['sent']}" if "delivered" in e2e else None


def rows(report: BenchReport, section: dict[str, Any]) -> list[dict[str, Any]]:
    """Single node (the main run) beside each cluster, with cluster ÷ single where both are
    numbers: what a reader of bench.json compares without recomputing."""
    hops = {h.hop: h.perSecond for h in report.rawHops}
    single_e2e, single_ref = report.endToEnd, report.reference.get("latencyMs") or {}
    out: list[dict[str, Any]] = []
    if "redis" in section:
        r = section["redis"]
        e2e = r.get("endToEnd") or {}
        out += [
            _row(
                "redis",
                "limiter calls/s (raw token bucket, 32 in flight)",
                hops.get("redis token bucket"),
                (r.get("limiter") or {}).get("perSecond"),
            ),
            _row(
                "redis",
                "e2e throughput (deliveries/s)",
                single_e2e.get("throughputPerSecond"),
                e2e.get("throughputPerSecond"),
            ),
            _row("redis", "e2e delivered / sent", _delivered(single_e2e), _delivered(e2e)),
        ]
    if "rabbitmq" in section:
        r = section["rabbitmq"]
        e2e = r.get("endToEnd") or {}
        lat = (r.get("reference") or {}).get("latencyMs") or {}
        out += [
            _row(
                "rabbitmq",
                "e2e throughput (deliveries/s)",
                single_e2e.get("throughputPerSecond"),
                e2e.get("throughputPerSecond"),
            ),
            _row("rabbitmq", "e2e delivered / sent", _delivered(single_e2e), _delivered(e2e)),
            _row("rabbitmq", "reference p50 (ms)", single_ref.get("p50"), lat.get("p50")),
            _row("rabbitmq", "reference p99 (ms)", single_ref.get("p99"), lat.get("p99")),
        ]
    return out


def print_clusters(console: Console, section: dict[str, Any]) -> None:
    """The side-by-side table, and where each cluster ran."""
    table = Table(
        "system", "measure", "single node", "cluster", "cluster ÷ single", title="Single vs cluster"
    )
    for row in section.get("rows") or []:
        table.add_row(
            row["system"],
            row["measure"],
            _fmt(row["single"]),
            _fmt(row["cluster"]),
            _fmt(row["clusterToSingle"]),
        )
    console.print(table)
    for kind in ("redis", "rabbitmq"):
        if kind in section and "nodes" in section[kind]:
            console.print(f"{kind} cluster: {section[kind]['nodes']}")
