"""`fila bench`: raw ceilings of each hop, then Fila end to end, limiter accuracy across worker
processes, fairness under one noisy instance, and config propagation — in one bounded run on
isolated namespaces, with a progress bar, a table, JSON, and the figures checked against targets.
"""

from simulator.bench import control
from simulator.bench.harness import FULL, QUICK, Bench, Profile
from simulator.bench.report import BenchReport, TargetCheck, check_targets, jain, print_report
from simulator.bench.run import run_bench

__all__ = [
    "FULL",
    "QUICK",
    "Bench",
    "BenchReport",
    "Profile",
    "TargetCheck",
    "check_targets",
    "control",
    "jain",
    "print_report",
    "run_bench",
]
