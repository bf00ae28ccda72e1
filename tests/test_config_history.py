"""Configuration history (issue 19) against a real `fila controlplane`: every kind of change
recorded once with its route, caller, old and new values (secrets masked); refused changes and
failed ones leave no record; retention drops old rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar

from controlplane.caller import fingerprint
from fila.settings import Settings
from simulator.benchenv import database
from tests.support import wait_for
from tests.test_controlplane_support import cp, cp_proc, migrated, run_migrations

__all__ = ["cp", "cp_proc", "migrated"]


@pytest.fixture
async def settings(settings: Settings) -> AsyncIterator[Settings]:
    """A database of its own: the history of the run's other tests must not count here."""
    name = f"fila_history_{uuid.uuid4().hex[:8]}"
    url = await database(settings, name, create=True)
    own = settings.replace(database_url=url)
    try:
        await asyncio.to_thread(run_migrations, own)
        yield own
    finally:
        await database(settings, name, create=False)


async def _history(cp: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await cp.get("/config/history", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == len(body["changes"])
    changes: list[dict[str, Any]] = body["changes"]
    return changes


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_every_kind_of_change_is_recorded_once_with_masked_secrets(
    cp_proc: httpx.AsyncClient, settings: Settings
) -> None:
    cp = cp_proc
    assert await _history(cp) == []
    inst = "hist-a"
    filt = {"minDurationSeconds": 5, "maxDurationSeconds": 60, "enabled": True}
    await _ok(await cp.put(f"/instance/{inst}/filters/audio", json=filt))
    bulk = {"instances": [inst, "hist-b"], "minDurationSeconds": 4, "maxDurationSeconds": 90}
    await _ok(await cp.put("/filters/audio/bulk", json={**bulk, "enabled": True}))
    emergency = {"enabled": True, "minDurationSeconds": 10, "maxDurationSeconds": 20}
    await _ok(await cp.put("/filters/emergency", json={**emergency, "reason": "storm"}))
    limits_before = await _ok(await cp.get("/ratelimit"))
    await _ok(await cp.put("/ratelimit", json={"capacity": 123}))
    hook = "https://hooks.example.com/in?token=tok-s3cret&x=1"
    await _ok(
        await cp.post(
            "/webhook/global/config",
            json={
                "principal": {"enabled": True, "url": hook},
                "headers": {"authorization": "Bearer hdr-s3cret"},
            },
        )
    )
    await _ok(await cp.put("/cleanup/schedule", json={"retentionDays": 9}))
    exported = await _ok(await cp.get("/config/export"))
    exported["filters"]["hist-c"] = {
        "minDurationSeconds": 7,
        "maxDurationSeconds": 70,
        "enabled": False,
    }
    await _ok(await cp.post("/config/import", json=exported))
    for action, body in (("pause", {}), ("resume", {}), ("drain", {"role": "delivery"})):
        await _ok(await cp.post(f"/queue/{action}", json=body))

    # Changes refused by validation (400) leave no record.
    count = len(await _history(cp))
    cleanup_before = exported["cleanup"]
    for method, path, body in (
        ("PUT", f"/instance/{inst}/filters/audio", {**filt, "minDurationSeconds": 0}),
        ("PUT", "/filters/audio/bulk", {**bulk, "maxDurationSeconds": 9000, "enabled": True}),
        ("PUT", "/filters/emergency", {**emergency, "maxDurationSeconds": 5}),
        ("PUT", "/ratelimit", {"capacity": 0}),
        ("POST", "/webhook/global/config", {"principal": {"enabled": True, "url": "ftp://x"}}),
        ("PUT", "/cleanup/schedule", {"dailyTime": "25:00"}),
        ("POST", "/config/import", {**exported, "cleanup": {**cleanup_before, "timezone": "X/Y"}}),
    ):
        refused = await cp.request(method, path, json=body)
        assert refused.status_code == 400, (path, refused.text)
    assert len(await _history(cp)) == count

    changes = list(reversed(await _history(cp)))  # oldest first
    assert [c["target"] for c in changes] == [
        f"instance:{inst}",
        "filters",
        "emergency",
        "ratelimit",
        "webhook",
        "cleanup",
        "import",
        "fleet",
        "fleet",
        "fleet",
    ]
    by = {c["route"]: c for c in changes}
    caller = f"admin {fingerprint(settings.api_key)}"
    assert {c["caller"] for c in changes} == {caller}
    assert {c["address"] for c in changes} == {"127.0.0.1"}
    single = by["PUT /instance/{instance}/filters/audio"]
    assert single["old"] == {"minDurationSeconds": 3, "maxDurationSeconds": 7200, "enabled": True}
    assert single["new"] == filt and single["instances"] == [inst]
    multi = by["PUT /filters/audio/bulk"]
    assert multi["instances"] == [inst, "hist-b"]
    assert multi["old"]["filters"][inst] == filt
    assert multi["old"]["filters"]["hist-b"]["minDurationSeconds"] == 3
    assert multi["new"] == {"minDurationSeconds": 4, "maxDurationSeconds": 90, "enabled": True}
    assert by["PUT /filters/emergency"]["old"]["enabled"] is False
    assert by["PUT /filters/emergency"]["new"]["reason"] == "storm"
    assert by["PUT /ratelimit"]["old"] == limits_before
    assert by["PUT /ratelimit"]["new"] == {**limits_before, "capacity": 123}
    webhook = by["POST /webhook/global/config"]
    assert webhook["old"]["principal"] == {"enabled": False, "url": ""}
    assert webhook["new"]["principal"]["url"] == (
        "https://hooks.example.com/in?token=%2A%2A%2A&x=%2A%2A%2A"
    )
    assert webhook["new"]["headers"] == {"authorization": "***"}
    cleanup = by["PUT /cleanup/schedule"]
    assert (cleanup["old"]["retentionDays"], cleanup["new"]["retentionDays"]) == (7, 9)
    imported = by["POST /config/import"]
    assert "hist-c" not in imported["old"]["filters"]
    assert imported["new"]["filters"]["hist-c"]["maxDurationSeconds"] == 70
    assert imported["instances"] == sorted(exported["filters"])
    fleet = [c for c in changes if c["target"] == "fleet"]
    routes = ["POST /queue/pause", "POST /queue/resume", "POST /queue/drain"]
    assert [c["route"] for c in fleet] == routes
    assert [(c["old"]["paused"], c["new"]["paused"]) for c in fleet] == [
        (False, True),
        (True, False),
        (False, False),
    ]
    assert fleet[2]["new"]["role"] == "delivery"
    text = json.dumps(changes)
    for secret in ("tok-s3cret", "hdr-s3cret", settings.api_key):
        assert secret not in text, secret

    # Reading it: by target (an instance also finds the bulk change and imports naming it),
    # since, limit; a bad parameter is a 400 naming it.
    mine = await _history(cp, target=f"instance:{inst}")
    assert [c["route"] for c in mine] == [
        "POST /config/import",
        "PUT /filters/audio/bulk",
        "PUT /instance/{instance}/filters/audio",
    ]
    assert [c["target"] for c in await _history(cp, target="ratelimit")] == ["ratelimit"]
    assert len(await _history(cp, limit=2)) == 2
    assert await _history(cp, since=changes[-1]["at"]) == [changes[-1]]
    assert await _history(cp, since="2999-01-01T00:00:00Z") == []
    for params, field in (({"limit": 0}, "limit"), ({"since": "yesterday"}, "since")):
        bad = await cp.get("/config/history", params=params)
        assert bad.status_code == 400 and bad.json()["field"] == field, bad.text


async def test_a_change_whose_mirror_fails_leaves_no_record(cp: Any, settings: Settings) -> None:
    """The record is in the change's transaction: the Redis mirror failing rolls both back."""
    app = cp.app
    assert isinstance(app, Litestar)
    before = (await cp.get("/ratelimit")).json()

    async def broken(*_: Any, **__: Any) -> None:
        raise ConnectionError("mirror down")

    store = app.state.rt.config
    original = store.set_ratelimit
    store.set_ratelimit = broken
    try:
        failed = await cp.put("/ratelimit", json={"capacity": before["capacity"] + 1})
        assert failed.status_code == 503, failed.text
    finally:
        store.set_ratelimit = original
    assert (await cp.get("/ratelimit")).json() == before
    assert (await cp.get("/config/history")).json()["changes"] == []
    ok = await cp.put("/ratelimit", json={"capacity": before["capacity"] + 1})
    assert ok.status_code == 200, ok.text
    assert [c["target"] for c in (await cp.get("/config/history")).json()["changes"]] == [
        "ratelimit"
    ]


async def test_retention_hides_and_prunes_old_changes(settings: Settings) -> None:
    from litestar.testing import AsyncTestClient

    from controlplane.app import create_app

    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    conn = await asyncpg.connect(settings.database_url)
    try:
        for at, target in ((old, "ancient"), (dt.datetime.now(dt.UTC), "recent")):
            await conn.execute(
                "INSERT INTO config_change (at, route, caller, address, target, instances, old, "
                "new) VALUES ($1, 'PUT /x', 'system', '', $2, '[]', 'null', 'null')",
                at,
                target,
            )
        short = settings.replace(config_history_days=2)
        async with AsyncTestClient(app=create_app(short), timeout=30) as client:
            client.headers["apikey"] = settings.api_key
            shown = (await client.get("/config/history")).json()["changes"]
            assert [c["target"] for c in shown] == ["recent"]

            async def pruned() -> bool:
                targets = await conn.fetch("SELECT target FROM config_change")
                return [r["target"] for r in targets] == ["recent"]

            await wait_for(pruned, timeout=10)
    finally:
        await conn.close()


async def test_the_cli_and_the_tui_show_the_history(
    cp_proc: httpx.AsyncClient, settings: Settings
) -> None:
    from tui.app import FilaApp
    from tui.screens.instance_history import InstanceHistory
    from tui.widgets.historytable import HistoryTable

    cp = cp_proc
    await _ok(await cp.put("/ratelimit", json={"capacity": 321}))
    filt = {"minDurationSeconds": 6, "maxDurationSeconds": 66, "enabled": True}
    await _ok(await cp.put("/instance/hist-tui/filters/audio", json=filt))
    pointed = settings.replace(server_url=str(cp.base_url))
    env = {**os.environ, **pointed.to_env()}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "fila", "config", "history", "--instance", "hist-tui"],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "1 configuration changes" in done.stdout and "minDurationSeconds 3→6" in done.stdout
    assert "ratelimit" not in done.stdout  # only that instance's changes
    refused = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "fila", "config", "history", "--limit", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1 and "limit: must be between 1 and 1000" in refused.stderr

    app = FilaApp(pointed, poll_seconds=0.2, start="history")
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one("#history", HistoryTable)
        await wait_for(lambda: table.row_count == 2, timeout=30)
        newest, oldest = (str(table.get_row_at(i)[2]) for i in range(2))
        assert newest == "maxDurationSeconds 7200→66, minDurationSeconds 3→6", newest
        assert oldest.startswith("capacity ") and "→321" in oldest, oldest
        await app.switch_mode("instances")
        await wait_for(lambda: app.data.instances is not None, timeout=30)
        screen = app.screen
        await wait_for(lambda: screen.query_one("#instances").row_count >= 1, timeout=30)
        await pilot.press("h")
        await wait_for(lambda: isinstance(app.screen, InstanceHistory), timeout=10)
        modal = app.screen.query_one("#instance-history", HistoryTable)
        await wait_for(lambda: modal.row_count == 1, timeout=10)
        assert str(modal.get_row_at(0)[1]) == "instance:hist-tui"
