"""The served OpenAPI document tells the truth (issue 21), against a real `fila controlplane`.

Schemathesis runs every check (stateful phase included, fixed seed) over every operation, the
fleet-pausing ones in a run of their own; a client generated from the document by
openapi-python-client reads, writes and gets typed errors; /process/finish answers within
FINISH_WAIT_SECONDS while Evolution API is unreachable, the end still shown in /process/status.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controlplane.feedback.service import FINISH_WAIT_SECONDS
from fila.settings import Settings
from simulator.benchenv import database
from tests.test_controlplane_support import cp_proc, migrated, run_migrations

__all__ = ["cp_proc", "migrated"]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SEED = 21
EXAMPLES = 8
"""Per operation and phase: the two runs stay near 90 s on 2 cores."""
ISOLATED = r"^/queue/(pause|drain)$"
"""Operations that stop the fleet's workers: fuzzed in a run of their own."""
UNREACHABLE = "http://127.0.0.1:9"
"""Evolution API for these tests: nothing listens on the discard port."""


@pytest.fixture
async def settings(settings: Settings) -> AsyncIterator[Settings]:
    """Own database (the run stores random configuration); Evolution API unreachable; the
    wrong-key throttle lifted, as the auth checks send missing and wrong keys on purpose
    (tests/test_network_safety.py checks the throttle itself)."""
    name = f"fila_oas_{uuid.uuid4().hex[:8]}"
    url = await database(settings, name, create=True)
    own = settings.replace(database_url=url, evolution_url=UNREACHABLE, auth_fail_limit=1_000_000)
    try:
        await asyncio.to_thread(run_migrations, own)
        yield own
    finally:
        await database(settings, name, create=False)


def _schemathesis(base_url: str, apikey: str, *selection: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            f"{base_url}/schema/openapi.json",
            "-H",
            f"apikey: {apikey}",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--seed",
            str(SEED),
            "--max-examples",
            str(EXAMPLES),
            "--request-timeout",
            str(FINISH_WAIT_SECONDS + 10),
            "--workers",
            "2",
            "--no-shrink",
            *selection,
        ],
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks"},
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_schemathesis_all_checks_pass_on_every_operation(
    cp_proc: httpx.AsyncClient, settings: Settings
) -> None:
    base = str(cp_proc.base_url)
    main = await asyncio.to_thread(
        _schemathesis, base, settings.api_key, "--exclude-path-regex", ISOLATED
    )
    print(main.stdout[-1500:])
    assert main.returncode == 0, main.stdout[-20000:] + main.stderr[-2000:]
    isolated = await asyncio.to_thread(
        _schemathesis, base, settings.api_key, "--include-path-regex", ISOLATED
    )
    print(isolated.stdout[-800:])
    assert isolated.returncode == 0, isolated.stdout[-20000:] + isolated.stderr[-2000:]
    for run in (main, isolated):
        assert "errored" not in run.stdout.rsplit("Test cases:", 1)[-1], run.stdout[-3000:]
    resumed = await cp_proc.post("/queue/resume")
    assert resumed.status_code == 200


async def test_a_generated_client_reads_writes_and_gets_typed_errors(
    cp_proc: httpx.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    doc = tmp_path / "openapi.json"
    doc.write_bytes((await cp_proc.get("/schema/openapi.json")).content)
    config = tmp_path / "config.yaml"
    config.write_text("literal_enums: true\n")  # IANA names (GMT0, GMT-0) clash as enum keys
    done = await asyncio.to_thread(
        subprocess.run,
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(doc),
            "--meta",
            "none",
            "--output-path",
            str(tmp_path / "fila_oas_client"),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert (tmp_path / "fila_oas_client" / "api").is_dir(), done.stdout + done.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        result = await asyncio.to_thread(_use_client, str(cp_proc.base_url), settings.api_key)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("fila_oas_client")]:
            del sys.modules[name]
    stats, record, problem = result
    assert type(stats).__name__ == "QueueStats" and stats.queue_size >= 0
    assert type(record).__name__ == "AudioFilterRecord"
    assert (record.min_duration_seconds, record.max_duration_seconds) == (5, 60)
    assert type(problem).__name__ == "Problem"
    assert problem.status_code == 400 and problem.field == "maxDurationSeconds"
    stored = (await cp_proc.get("/instance/oas-client/filters/audio")).json()
    assert stored == {"minDurationSeconds": 5, "maxDurationSeconds": 60, "enabled": True}


def _use_client(base_url: str, apikey: str) -> tuple[Any, Any, Any]:
    """Blocking: the generated client's sync calls."""
    client_mod = importlib.import_module("fila_oas_client")
    stats_op = importlib.import_module("fila_oas_client.api.queue.queue_stats_stats")
    put_op = importlib.import_module(
        "fila_oas_client.api.filters.instance_filters_audio_put_filter"
    )
    body_cls = importlib.import_module("fila_oas_client.models").AudioFilterBody
    client = client_mod.AuthenticatedClient(
        base_url=base_url, token=apikey, prefix="", auth_header_name="apikey"
    )
    stats = stats_op.sync(client=client)
    record = put_op.sync(
        "oas-client",
        client=client,
        body=body_cls(min_duration_seconds=5, max_duration_seconds=60, enabled=True),
    )
    problem = put_op.sync(
        "oas-client",
        client=client,
        body=body_cls(min_duration_seconds=50, max_duration_seconds=10, enabled=True),
    )
    return stats, record, problem


async def test_finish_answers_within_its_bound_while_evolution_is_unreachable(
    cp_proc: httpx.AsyncClient,
) -> None:
    body = {"instance": "oas", "chatId": "5511999999999@s.whatsapp.net", "messageId": "M1"}
    assert (await cp_proc.post("/process/start", json=body)).status_code == 200
    began = time.monotonic()
    finish = await cp_proc.post(
        "/process/finish", json={**body, "status": "success", "texto": "pronto"}
    )
    took = time.monotonic() - began
    assert finish.status_code == 202, finish.text
    assert took < FINISH_WAIT_SECONDS + 2, took
    answer = finish.json()
    assert answer["pending"] is True and answer["textSent"] is False
    status = (await cp_proc.get("/process/status")).json()
    ending = {s["sessionId"]: s for s in status["endingSessions"]}
    sid = answer["sessionId"]
    assert sid in ending, status
    assert ending[sid]["status"] == "success" and ending[sid]["reactionSent"] is False
    assert ending[sid]["text"] is True and ending[sid]["textSent"] is False
    assert sid not in {s["sessionId"] for s in status["activeSessions"]}
