"""`fila capacity`: the plan's arithmetic, line by line, from a recorded bench.json."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from simulator import capacity

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "bench.json"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fila", "capacity", "--bench", str(FIXTURE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(ROOT),
        check=False,
    )


@pytest.mark.parametrize(("instances", "rate"), [(500, 1.0), (5000, 1.0), (50000, 2.5)])
def test_every_line_of_the_plan_is_the_arithmetic_it_shows(instances: int, rate: float) -> None:
    done = run(
        "--instances", str(instances), "--rate", str(rate), "--retention-days", "30", "--json"
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    recorded = json.loads(FIXTURE.read_text())["capacity"]
    costs, ceilings = recorded["costs"], recorded["ceilings"]
    notes = instances * rate / 60
    assert plan["notesPerSecond"] == pytest.approx(notes)
    got = {(line["part"], line["figure"]): line["value"] for line in plan["lines"]}
    head = capacity.HEADROOM
    for role in ("ingest", "delivery", "controlplane"):
        busy = notes * costs["cpuMsPerNote"][role] / 1000
        idle = costs["idleCoresPerProcess"][role]
        procs = 1 if role == "controlplane" else max(1, math.ceil(busy / (head - idle)))
        assert got[(role, "cores busy")] == pytest.approx(busy)
        assert got[(role, "processes")] == procs
        assert got[(role, "cores")] == pytest.approx(busy + procs * idle)
    assert got[("rabbitmq", "publishes")] == pytest.approx(notes * costs["amqpPublishPerNote"])
    assert got[("rabbitmq", "deliveries")] == pytest.approx(notes * costs["amqpDeliverPerNote"])
    assert got[("rabbitmq", "acks")] == pytest.approx(notes * costs["amqpAckPerNote"])
    assert got[("rabbitmq", "backlog held")] == pytest.approx(notes * 3600)
    by_queue = {q: notes * per for q, per in costs["amqpPublishPerNoteByQueue"].items() if per > 0}
    assert {"fila.ingest", "global.messages"} <= set(by_queue)  # events in, voice notes out
    for queue, rate_in in by_queue.items():
        assert got[("rabbitmq", f"publishes to {queue}")] == pytest.approx(rate_in)
    assert sum(by_queue.values()) == pytest.approx(got[("rabbitmq", "publishes")], rel=0.02)
    busiest = max(by_queue, key=lambda q: by_queue[q])
    # A bench.json recorded before the fixed rate was measured reads as 0 commands a second.
    commands = costs.get("redisCommandsFixedPerSecond", 0.0) + notes * costs["redisCommandsPerNote"]
    scripts = notes * costs["redisScriptsPerNote"]
    assert got[("redis", "commands")] == pytest.approx(commands)
    assert got[("redis", "admission scripts ({bucket} slot)")] == pytest.approx(scripts)
    assert got[("redis", "shards")] == max(
        1, math.ceil(commands / (capacity.REDIS_OPS_PER_SHARD * head))
    )
    assert got[("s3", "PUTs")] == pytest.approx(notes * costs["s3PutsPerNote"])
    assert got[("s3", "GETs")] == pytest.approx(notes)
    size = costs["s3BytesPerNote"] / costs["s3PutsPerNote"]
    assert got[("s3", "storage")] == pytest.approx(notes * 86400 * 30 * size / 1e9)
    assert got[("webhooks", "POSTs")] == pytest.approx(notes * costs["webhookPostsPerNote"])
    assert got[("webhooks", "egress")] == pytest.approx(
        notes * costs["webhookBytesPerNote"] * 8 / 1e6
    )
    assert got[("postgresql", "transactions")] == pytest.approx(
        notes * costs["pgTransactionsPerNote"]
    )
    assert len(got) == len(plan["lines"]) == 22 + len(by_queue)  # every line checked above
    shares = {
        f"rabbitmq ({busiest} leader)": by_queue[busiest] / ceilings["amqpPublishPerSecond"],
        "redis ({bucket} slot)": scripts / ceilings["redisScriptsPerSecond"],
        "s3": got[("s3", "PUTs")] / ceilings["s3PutsPerSecond"],
        "webhook receiver": got[("webhooks", "POSTs")] / ceilings["webhookPostsPerSecond"],
    }
    assert plan["utilisation"] == pytest.approx({k: round(v, 4) for k, v in shares.items()})
    assert plan["firstToSaturate"] == max(shares, key=lambda k: shares[k])


def test_redis_commands_are_the_fixed_rate_plus_the_notes() -> None:
    recorded = json.loads(FIXTURE.read_text())["capacity"]
    costs, ceilings = capacity.from_bench({"capacity": recorded})
    costs.redisCommandsFixedPerSecond = 60_000.0  # a fixed rate past one shard's 70 % alone
    result = capacity.plan(costs, ceilings, instances=500, rate=1.0)
    got = {(line.part, line.figure): line for line in result.lines}
    commands = 60_000.0 + 500 / 60 * costs.redisCommandsPerNote
    assert got[("redis", "commands")].value == pytest.approx(commands)
    assert got[("redis", "commands")].how.startswith("60000 + 8.33333/s × ")
    assert got[("redis", "shards")].value == 2


def test_audio_seconds_sets_the_storage_per_note() -> None:
    done = run("--instances", "1000", "--rate", "2", "--audio-seconds", "30", "--json")
    plan = json.loads(done.stdout)
    [storage] = [line for line in plan["lines"] if line["figure"] == "storage"]
    notes = 1000 * 2 / 60
    assert storage["value"] == pytest.approx(
        notes * 86400 * 7 * 30 * capacity.OPUS_BYTES_PER_SECOND / 1e9
    )


def test_the_table_names_the_first_engine_to_saturate_and_the_assumptions() -> None:
    done = run("--instances", "50000", "--rate", "1")
    assert done.returncode == 0, done.stderr
    assert "first to saturate:" in done.stdout
    assert "headroom" in done.stdout and "each queue is one queue" in done.stdout


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--instances", "0", "--rate", "1"], "--instances"),
        (["--instances", "-5", "--rate", "1"], "--instances"),
        (["--instances", "10", "--rate", "0"], "--rate"),
        (["--instances", "10", "--rate", "500"], "--rate"),
        (["--instances", "10", "--rate", "1", "--audio-seconds", "-3"], "--audio-seconds"),
        (["--instances", "10", "--rate", "1", "--retention-days", "0"], "--retention-days"),
    ],
)
def test_nonsense_is_refused_in_one_line_naming_the_flag(args: list[str], flag: str) -> None:
    done = run(*args)
    assert done.returncode == 2
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: " + flag), lines
