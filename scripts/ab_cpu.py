"""Fila's CPU per delivered voice note, two variants alternated in one run: before/after.

    .venv/bin/python scripts/ab_cpu.py --variant before@HEAD~1 --variant after@HEAD --rounds 3
    .venv/bin/python scripts/ab_cpu.py --variant werkzeug:FILA_S3_ENDPOINT_URL=http://… \\
        --variant keepalive:FILA_S3_ENDPOINT_URL=http://… --rounds 3

A variant is `name@REV` (a git revision, checked out in a temporary worktree and put first on
PYTHONPATH for the bench and every process it starts), `name:VAR=VALUE,…` (environment), or
both: `name@REV:VAR=VALUE,…`.
Each round runs `fila bench --quick --only endToEnd` (or, with --roles, each role alone on a
backlog) once per variant, in turn, so a busier minute of the machine falls on both; the
medians are printed with every round's figures. A fixed pure-Python loop is timed every half
second meanwhile (`loopMs`, its CPU time): on a shared host its slow minutes are every figure's,
so `perLoop` (CPU per note over that loop's time) compares rounds the host ran at other speeds.
`redisCmds` is the Redis server's commands per delivered note over the whole run (the bench's
own reads included), read from INFO commandstats: nothing else may use that server meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator.cpuusage import SpeedProbe  # noqa: E402


def prepare(spec: str, scratch: Path) -> tuple[str, dict[str, str]]:
    """(name, environment) of one variant; a revision gets a worktree of its own."""
    if "@" in spec and ":" not in spec.split("@", 1)[0]:
        name, rest = spec.split("@", 1)
        rev, _, assignments = rest.partition(":")
        extra = dict(pair.split("=", 1) for pair in assignments.split(",") if pair)
        tree = scratch / name
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), rev],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        for harness in ("simulator/bench/roles.py", "scripts/cpu_per_role.py"):
            if not (tree / harness).exists():  # measure an older revision with today's harness
                shutil.copy(ROOT / harness, tree / harness)
        return name, {"PYTHONPATH": str(tree), **extra}
    name, _, assignments = spec.partition(":")
    env = dict(pair.split("=", 1) for pair in assignments.split(",") if pair)
    return name, env


def where(env: dict[str, str]) -> str:
    """The variant's tree as the working directory: `python -m` puts the working directory
    ahead of PYTHONPATH, so run from ROOT every variant would import ROOT's code."""
    return env.get("PYTHONPATH", str(ROOT))


def environ(env: dict[str, str]) -> dict[str, str]:
    """The variant's environment, with the data directory (relative by default) pinned to
    ROOT's, where the running services are recorded."""
    return {"FILA_DATA_DIR": str(ROOT / ".fila"), **os.environ, **env}


def roles_run(env: dict[str, str], out: Path, notes: int) -> dict[str, float]:
    """scripts/cpu_per_role.py under the variant: each role alone, its own CPU per note."""
    script = Path(env.get("PYTHONPATH", str(ROOT))) / "scripts" / "cpu_per_role.py"
    command = [sys.executable, str(script), "--notes", str(notes), "--json", str(out)]
    done = subprocess.run(command, cwd=where(env), env=environ(env), capture_output=True, text=True)
    figures = json.loads(out.read_text()) if out.exists() else {}
    if not figures.get("allDelivered"):
        raise SystemExit(f"run failed or lost notes:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    ingest, delivery = figures["ingestMsPerNote"], figures["deliveryMsPerNote"]
    return {
        "ingest": ingest,
        "delivery": delivery,
        "both": round(ingest + delivery, 3),
        "perSecond": figures["ingestPerSecond"],
        "machine": 0.0,
    }


def redis_calls() -> int:
    """Commands the Redis server has run so far (every database and prefix)."""
    import redis

    from fila.settings import get_settings

    client = redis.Redis.from_url(get_settings().redis_url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return sum(int(entry["calls"]) for entry in stats.values())


def one_run(env: dict[str, str], out: Path, full: bool) -> dict[str, float]:
    command = [sys.executable, "-m", "fila", "bench", "--only", "endToEnd", "--json", str(out)]
    if not full:
        command.insert(4, "--quick")
    calls = redis_calls()
    done = subprocess.run(command, cwd=where(env), env=environ(env), capture_output=True, text=True)
    calls = redis_calls() - calls
    report = json.loads(out.read_text()) if out.exists() else {}
    e2e = report.get("endToEnd") or {}
    if not e2e.get("allDelivered"):
        raise SystemExit(f"run failed or lost notes:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    per = e2e["cpuMsPerNote"]
    return {
        "ingest": per["ingest"],
        "delivery": per["delivery"],
        "both": per["ingest+delivery"],
        "perSecond": e2e["throughputPerSecond"],
        "machine": e2e["coresUsed"].get("whole machine", 0.0),
        "redisCmds": round(calls / max(int(e2e["delivered"]), 1), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="The full profile (30 s load).")
    parser.add_argument(
        "--roles",
        type=int,
        default=0,
        metavar="NOTES",
        help="Instead: each role alone on a backlog of NOTES (scripts/cpu_per_role.py).",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fila-ab-") as tmp:
        scratch = Path(tmp)
        variants = [prepare(spec, scratch) for spec in args.variant]
        results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
        try:
            for n in range(args.rounds):
                for name, env in variants:
                    out = scratch / f"{name}-{n}.json"
                    with SpeedProbe() as probe:
                        figures = (
                            roles_run(env, out, args.roles)
                            if args.roles
                            else one_run(env, out, args.full)
                        )
                    figures["loopMs"] = probe.median_ms() or 0.0
                    figures["perLoop"] = round(figures["both"] / max(figures["loopMs"], 1e-9), 3)
                    results[name].append(figures)
                    print(
                        f"round {n + 1} {name:>12}: "
                        + "  ".join(f"{k} {v:g}" for k, v in figures.items()),
                        flush=True,
                    )
        finally:
            for _name, env in variants:
                if "PYTHONPATH" in env:
                    subprocess.run(
                        ["git", "worktree", "remove", "--force", env["PYTHONPATH"]],
                        cwd=ROOT,
                        check=False,
                        capture_output=True,
                    )
    print(f"\nmedian of {args.rounds} rounds (ms of CPU per delivered note; deliveries/s)")
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(
            f"  {name:>12}: ingest {med['ingest']:.2f}  delivery {med['delivery']:.2f}"
            f"  both {med['both']:.2f}  ({med['perSecond']:.1f}/s, machine {med['machine']:.2f})"
            f"  reference loop {med['loopMs']:.2f} ms, both per loop ms {med['perLoop']:.3f}"
        )


if __name__ == "__main__":
    main()
