"""Counts and latencies gathered in memory and written to Redis once per short interval.

A busy delivery worker wrote its bookkeeping in a round trip of its own for every note; the
round trip, not the commands, was a quarter of its CPU (docs/benchmarks.md). Gathered for
TALLY_SECONDS, the same totals reach Redis in one pipeline, a tenth of a second later.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from redis.asyncio.client import Pipeline

from fila import stats

TALLY_SECONDS = 0.1
"""How long counts wait in memory: readers (TUI, /queue/stats, /metrics) see them this late."""


class Taken:
    """What one write took out of the tally, to put back if the pipeline failed."""

    def __init__(
        self,
        counts: dict[str | None, Counter[str]],
        latencies: dict[str, tuple[Counter[str], float]],
    ) -> None:
        self.counts = counts
        self.latencies = latencies


class Tally:
    """Per-instance counts and latency histograms since the last write, merged by field."""

    def __init__(self, counters: stats.Counters) -> None:
        self.counters = counters
        self._counts: dict[str | None, Counter[str]] = {}
        self._latencies: dict[str, tuple[Counter[str], float]] = {}

    @property
    def pending(self) -> bool:
        return bool(self._counts or self._latencies)

    def add(self, instance: str | None, counts: Mapping[str, int]) -> None:
        self._counts.setdefault(instance, Counter()).update(counts)

    def latency(self, name: str, seconds: float) -> None:
        buckets, total = self._latencies.get(name, (Counter(), 0.0))
        buckets[stats.latency_bucket(seconds)] += 1
        self._latencies[name] = (buckets, total + seconds)

    def write_on(self, pipe: Pipeline) -> Taken:
        """Queue everything pending on `pipe` and empty the tally."""
        taken = Taken(self._counts, self._latencies)
        self._counts, self._latencies = {}, {}
        for instance, counts in taken.counts.items():
            self.counters.bump_on(pipe, instance, counts)
        for name, (buckets, total) in taken.latencies.items():
            stats.record_latencies_on(pipe, self.counters.keys, name, buckets, total)
        return taken

    def put_back(self, taken: Taken) -> None:
        """A write that failed: its totals wait for the next one."""
        for instance, counts in taken.counts.items():
            self.add(instance, counts)
        for name, (buckets, total) in taken.latencies.items():
            mine, my_total = self._latencies.get(name, (Counter(), 0.0))
            mine.update(buckets)
            self._latencies[name] = (mine, my_total + total)
