"""`fila bench --cluster`: the side-by-side rows and their place in bench.json (no servers)."""

from __future__ import annotations

from typing import Any

import msgspec

from simulator import rawhops
from simulator.bench import FULL, QUICK, BenchReport
from simulator.bench.clusters import PART_SECONDS, rows, short


def _report() -> BenchReport:
    return BenchReport(
        startedAt="2026-01-01T00:00:00+00:00",
        mode="quick",
        machine={},
        rawHops=[
            rawhops.HopResult(
                hop="redis token bucket",
                operations=3000,
                seconds=3,
                perSecond=1000.0,
                concurrency=32,
            )
        ],
        endToEnd={"throughputPerSecond": 100.0, "delivered": 3000, "sent": 3000},
        reference={"latencyMs": {"p50": 20.0, "p99": 50.0}},
    )


SECTION: dict[str, Any] = {
    "redis": {
        "limiter": {"perSecond": 800.0},
        "endToEnd": {"throughputPerSecond": 90.0, "delivered": 2990, "sent": 3000},
    },
    "rabbitmq": {
        "endToEnd": {"throughputPerSecond": 70.0, "delivered": 3000, "sent": 3000},
        "reference": {"latencyMs": {"p50": 25.0, "p99": 80.0}},
    },
}


def _by(out: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["system"], r["measure"].split(" (")[0]): r for r in out}


def test_rows_put_single_beside_cluster_with_the_ratio() -> None:
    got = _by(rows(_report(), SECTION))
    limiter = got[("redis", "limiter calls/s")]
    assert (limiter["single"], limiter["cluster"], limiter["clusterToSingle"]) == (
        1000.0,
        800.0,
        0.8,
    )
    assert got[("redis", "e2e throughput")]["clusterToSingle"] == 0.9
    assert got[("redis", "e2e delivered / sent")]["cluster"] == "2990 / 3000"
    assert got[("redis", "e2e delivered / sent")]["clusterToSingle"] is None
    assert got[("rabbitmq", "e2e throughput")]["clusterToSingle"] == 0.7
    assert got[("rabbitmq", "reference p99")]["clusterToSingle"] == 1.6
    assert got[("rabbitmq", "reference p50")]["clusterToSingle"] == 1.25


def test_a_part_that_failed_leaves_a_blank_not_a_ratio() -> None:
    report = _report()
    report.endToEnd = {}
    got = _by(rows(report, {"redis": {"errors": ["boom"], "limiter": {"perSecond": 5.0}}}))
    assert set(got) == {
        ("redis", "limiter calls/s"),
        ("redis", "e2e throughput"),
        ("redis", "e2e delivered / sent"),
    }
    assert got[("redis", "limiter calls/s")]["clusterToSingle"] == 0.005
    assert got[("redis", "e2e throughput")] | {"measure": ""} == {
        "system": "redis",
        "measure": "",
        "single": None,
        "cluster": None,
        "clusterToSingle": None,
    }


def test_the_section_round_trips_through_bench_json() -> None:
    report = _report()
    report.clusters = {"rows": rows(report, SECTION), **SECTION}
    back = msgspec.json.decode(msgspec.json.encode(report), type=BenchReport)
    assert back.clusters == report.clusters
    before = msgspec.to_builtins(report)
    del before["clusters"]  # a bench.json from before --cluster still reads
    assert msgspec.json.decode(msgspec.json.encode(before), type=BenchReport).clusters == {}


def test_the_comparison_profile_caps_each_part() -> None:
    assert short(QUICK) == QUICK
    full = short(FULL)
    assert max(full.hop_seconds, full.reference_seconds, full.saturation_seconds) <= PART_SECONDS
    assert full.drain_seconds == FULL.drain_seconds
