"""The TUI against a real control plane (subprocess), real ingest worker and real services.

Events go in through the control plane's Evolution webhook, the ingest worker filters them and
counts them in Redis, and the TUI must show those counts; edits made in its modals must reach the
control plane, the Redis mirror, and what the worker applies to the next event.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import httpx
import msgspec
import pytest
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static, Switch

from controlplane.cleanup.service import CleanupService
from controlplane.runtime import open_runtime
from fila import s3 as s3_clients
from fila import topology
from fila.audiofilter import AudioFilter
from fila.configstore import ConfigStore
from fila.keys import Keys
from fila.models import RateLimitConfig
from fila.settings import Settings
from fila.stats import Counters
from simulator.evolution import EvolutionStub
from simulator.receiver import Receiver
from tests.support import Proc, wait_for
from tests.test_ingest_support import audio_event
from tui.app import FilaApp
from tui.screens.edit_emergency import EditEmergency
from tui.screens.edit_ratelimit import EditRateLimit
from tui.screens.edit_thresholds import EditThresholds
from tui.screens.edit_weight import EditWeight
from tui.screens.instances import InstancesScreen
from tui.widgets.connbanner import ConnectionBanner

pytestmark = pytest.mark.timeout(240)
SIZE = (120, 40)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pointed_at(settings: Settings, port: int) -> Settings:
    return settings.replace(server_url=f"http://127.0.0.1:{port}", http_port=port)


async def healthy(settings: Settings) -> bool:
    try:
        async with httpx.AsyncClient(base_url=settings.server_url, timeout=2) as client:
            return (await client.get("/healthz")).status_code == 200
    except httpx.TransportError:
        return False


def start_controlplane(spawn: Callable[..., Proc], settings: Settings) -> Proc:
    return spawn(["controlplane"], settings, FILA_HTTP_PORT=str(settings.http_port))


@pytest.fixture
async def live(settings: Settings, spawn: Callable[..., Proc]) -> AsyncIterator[Settings]:
    """A control plane on a free port, for this test's vhost/prefix/bucket."""
    cp = pointed_at(settings, free_port())
    proc = start_controlplane(spawn, cp)
    try:
        await wait_for(lambda: healthy(cp), timeout=90, interval=0.3)
    except AssertionError:
        raise AssertionError("control plane did not start:\n" + proc.output()[-3000:]) from None
    yield cp


def voice_note(instance: str, message_id: str, seconds: int) -> dict[str, Any]:
    """An Evolution `messages.upsert` voice note, media inline (no download needed)."""
    event = audio_event(instance, message_id)
    event["data"]["pushName"] = "Operator test"
    event["data"]["message"] = {
        "audioMessage": {"mimetype": "audio/ogg; codecs=opus", "seconds": seconds},
        "base64": "T2dnUwACAAAAAAAAAAA=",
    }
    return event


async def send(settings: Settings, events: list[dict[str, Any]]) -> None:
    headers = {"apikey": settings.api_key}
    async with httpx.AsyncClient(base_url=settings.server_url, headers=headers) as client:
        for event in events:
            response = await client.post("/webhook/evolution", json=event, timeout=30)
            assert response.status_code == 202, response.text


def cells(app: FilaApp, instance: str) -> dict[str, str]:
    """What the instances table shows for `instance` (column key → text), empty if absent."""
    screen = app.screen_stack[0]
    assert isinstance(screen, InstancesScreen)
    table = screen.table
    if instance not in {str(k.value) for k in table.rows}:
        return {}
    keys = [str(c.value) for c in table.columns]
    return {
        k: getattr(v, "plain", str(v)) for k, v in zip(keys, table.get_row(instance), strict=True)
    }


async def select_row(app: FilaApp, instance: str) -> None:
    screen = app.screen_stack[0]
    assert isinstance(screen, InstancesScreen)
    screen.table.move_cursor(row=screen.table.get_row_index(instance))
    assert screen.current() == instance


async def test_instances_table_shows_real_counts_and_edits_reach_the_workers(
    live: Settings, spawn: Callable[..., Proc], redis: Any, keys: Keys
) -> None:
    worker = spawn(["worker", "ingest"], live)
    await send(
        live,
        [voice_note("tui-alpha", f"A{i}", 1) for i in range(3)]  # tooShort under the default 3 s
        + [voice_note("tui-alpha", f"B{i}", 8) for i in range(2)]
        + [voice_note("tui-beta", "C0", 1)],
    )
    app = FilaApp(live, poll_seconds=0.5, start="instances")
    async with app.run_test(size=SIZE) as pilot:
        try:
            await wait_for(
                lambda: (
                    cells(app, "tui-alpha").get("received") == "5"
                    and cells(app, "tui-alpha").get("tooShort") == "3"
                    and cells(app, "tui-alpha").get("processed") == "2"
                    and cells(app, "tui-beta").get("tooShort") == "1"
                ),
                timeout=90,
                interval=0.2,
            )
        except AssertionError:
            shown = (cells(app, "tui-alpha"), cells(app, "tui-beta"))
            raise AssertionError(f"table shows {shown}\n{worker.output()[-2000:]}") from None
        assert cells(app, "tui-alpha")["min"] == "3"

        # Edit tui-alpha's thresholds in the modal: min 10 s.
        await select_row(app, "tui-alpha")
        modal = await open_modal(app, pilot, "e", EditThresholds)
        assert isinstance(modal, EditThresholds)
        modal.query_one("#min", Input).value = "10"
        modal.query_one("#max", Input).value = "600"
        await save_modal(app, pilot, EditThresholds)

        got, untouched = await admin_get(
            live, "/instance/tui-alpha/filters/audio", "/instance/tui-beta/filters/audio"
        )
        assert (got["minDurationSeconds"], got["maxDurationSeconds"]) == (10, 600)
        assert untouched["minDurationSeconds"] == 3
        mirror = await ConfigStore(redis, keys, live).filter_for("tui-alpha")
        assert mirror == AudioFilter(minDurationSeconds=10, maxDurationSeconds=600, enabled=True)
        await wait_for(lambda: cells(app, "tui-alpha").get("min") == "10", timeout=30)
        assert cells(app, "tui-alpha")["max"] == "600"

        # The worker applies it: an 8 s note, accepted before, is now too short.
        await send(live, [voice_note("tui-alpha", "D0", 8)])
        await wait_for(
            lambda: (
                cells(app, "tui-alpha").get("tooShort") == "4"
                and cells(app, "tui-alpha").get("received") == "6"
            ),
            timeout=60,
            interval=0.2,
        )
        assert cells(app, "tui-alpha")["processed"] == "2"


async def test_invalid_threshold_is_refused_inline_without_a_request(live: Settings) -> None:
    headers = {"apikey": live.api_key}
    async with httpx.AsyncClient(base_url=live.server_url, headers=headers) as client:
        body = {"minDurationSeconds": 4, "maxDurationSeconds": 900, "enabled": True}
        assert (await client.put("/instance/tui-gamma/filters/audio", json=body)).status_code < 300
    app = FilaApp(live, poll_seconds=0.5, start="instances")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: cells(app, "tui-gamma").get("min") == "4", timeout=60)
        await select_row(app, "tui-gamma")
        modal = await open_modal(app, pilot, "e", EditThresholds)
        assert isinstance(modal, EditThresholds)
        modal.query_one("#min", Input).value = "0"
        await pilot.pause()
        shown = str(modal.query_one("#errors").render())
        assert "minDurationSeconds must be between 1 and 300" in shown
        assert "1 ≤ min ≤ 300" in str(modal.query_one("#rule").render())
        modal.query_one("#min", Input).value = "50"
        modal.query_one("#max", Input).value = "20"
        await pilot.click("#save")
        await pilot.pause()
        assert "maxDurationSeconds must be ≥ minDurationSeconds (50)" in str(
            modal.query_one("#errors").render()
        )
        assert modal.sent == 0
        assert isinstance(app.screen, EditThresholds)
        await pilot.press("escape")
    async with httpx.AsyncClient(base_url=live.server_url, headers=headers) as client:
        got = (await client.get("/instance/tui-gamma/filters/audio")).json()
    assert (got["minDurationSeconds"], got["maxDurationSeconds"]) == (4, 900)


async def test_rate_limit_modal_changes_the_live_bucket(
    live: Settings, redis: Any, keys: Keys
) -> None:
    app = FilaApp(live, poll_seconds=0.5, start="overview")
    async with app.run_test(size=SIZE) as pilot:
        modal = await open_modal(app, pilot, "l", EditRateLimit)
        modal.query_one("#capacity", Input).value = "0"
        await pilot.pause()
        assert "capacity must be ≥ 1" in str(modal.query_one("#errors").render())
        modal.query_one("#capacity", Input).value = "120"
        modal.query_one("#refill", Input).value = "60"
        modal.query_one("#reserve", Input).value = "95"
        await pilot.pause()
        assert "reservePercent must be 0 to 90" in str(modal.query_one("#errors").render())
        modal.query_one("#reserve", Input).value = "40"
        await save_modal(app, pilot, EditRateLimit)
    [bucket] = await admin_get(live, "/ratelimit")
    got = RateLimitConfig(**bucket)
    assert (got.capacity, got.refillPerMinute, got.reservePercent) == (120, 60.0, 40)
    mirror = await ConfigStore(redis, keys, live).ratelimit()
    assert (mirror.capacity, mirror.refillPerMinute, mirror.reservePercent) == (120, 60.0, 40)
    # The bucket lives in the run's shared PostgreSQL: later control planes would mirror it.
    headers = {"apikey": live.api_key}
    async with httpx.AsyncClient(base_url=live.server_url, headers=headers) as client:
        reset = await client.put("/ratelimit", json=msgspec.to_builtins(RateLimitConfig()))
        assert reset.status_code < 300, reset.text


async def test_weight_is_set_from_the_instances_screen(live: Settings) -> None:
    await put_filter(live, "tui-heavy", 3, 7200)
    app = FilaApp(live, poll_seconds=0.5, start="instances")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: cells(app, "tui-heavy").get("weight") == "1", timeout=60)
        await select_row(app, "tui-heavy")
        modal = await open_modal(app, pilot, "w", EditWeight)
        modal.query_one("#weight", Input).value = "11"
        await pilot.pause()
        assert "weight must be 1 to 10" in str(modal.query_one("#errors").render())
        modal.query_one("#weight", Input).value = "4"
        await save_modal(app, pilot, EditWeight)
        await wait_for(lambda: cells(app, "tui-heavy").get("weight") == "4", timeout=30)
    [got] = await admin_get(live, "/instance/tui-heavy/weight")
    assert got == {"instance": "tui-heavy", "weight": 4, "priority": 4}


async def test_unreachable_control_plane_shows_a_banner_then_reconnects(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    cp = pointed_at(settings, free_port())
    app = FilaApp(cp, poll_seconds=0.5, start="overview")
    async with app.run_test(size=(80, 24)) as pilot:
        banner = app.screen.query_one(ConnectionBanner)
        await wait_for(lambda: banner.display and app.connection_error, timeout=30)
        assert "unreachable" in str(banner.render())
        assert cp.server_url in str(banner.render())
        await pilot.press("2")  # still navigable while down
        await wait_for(lambda: app.current_mode == "instances")
        assert app.screen.query_one(ConnectionBanner).display

        start_controlplane(spawn, cp)
        await wait_for(lambda: app.connection_error is None, timeout=120, interval=0.2)
        await wait_for(lambda: app.data.overview is not None, timeout=30)
        await wait_for(lambda: app.data.instances is not None, timeout=30)
        assert not app.screen.query_one(ConnectionBanner).display
        table = app.screen.query_one(DataTable)
        assert table.row_count == len(app.data.instances.instances)  # type: ignore[union-attr]


async def test_every_screen_reads_the_real_control_plane(
    live: Settings, spawn: Callable[..., Proc]
) -> None:
    """Each screen's feeds decode the control plane's real responses (no feed error)."""
    spawn(["worker", "ingest"], live)
    app = FilaApp(live, poll_seconds=0.5, start="overview")
    wanted = {
        "1": lambda: app.data.overview is not None and app.data.overview.workersAlive >= 1,
        "3": lambda: app.data.process is not None,
        "4": lambda: app.data.cleanup is not None and app.data.schedule is not None,
        "5": lambda: app.data.webhook is not None,
        "6": lambda: app.data.deadLetters is not None,
        "7": lambda: any(w.role == "ingest" for w in app.data.workers or []),
    }
    async with app.run_test(size=SIZE) as pilot:
        for key, ready in wanted.items():
            await pilot.press(key)
            try:
                await wait_for(ready, timeout=60, interval=0.2)
            except AssertionError:
                shown = (app.current_mode, app.data.errors, app.connection_error)
                raise AssertionError(f"screen {key}: {shown}") from None
            assert app.data.errors == {}, app.data.errors
        assert app.connection_error is None
        table = app.screen.query_one("#workers", DataTable)
        assert table.row_count == len(app.data.workers or [])


async def open_modal(app: FilaApp, pilot: Any, key: str, modal: type[Screen[Any]]) -> Any:
    """Press `key`, wait until the `modal` screen is up; that screen."""
    await pilot.press(key)
    await wait_for(lambda: isinstance(app.screen, modal), timeout=30)
    return app.screen


async def save_modal(app: FilaApp, pilot: Any, modal: type[Screen[Any]]) -> None:
    """Click the modal's Save, wait until the `modal` screen has closed."""
    await pilot.click("#save")
    await wait_for(lambda: not isinstance(app.screen, modal), timeout=30)


async def admin_get(settings: Settings, *paths: str) -> list[Any]:
    """The JSON bodies of GET `paths` on the control plane, with the admin key."""
    headers = {"apikey": settings.api_key}
    async with httpx.AsyncClient(base_url=settings.server_url, headers=headers) as client:
        return [(await client.get(path)).json() for path in paths]


async def put_filter(settings: Settings, instance: str, low: int, high: int) -> None:
    headers = {"apikey": settings.api_key}
    body = {"minDurationSeconds": low, "maxDurationSeconds": high, "enabled": True}
    async with httpx.AsyncClient(base_url=settings.server_url, headers=headers) as client:
        response = await client.put(f"/instance/{instance}/filters/audio", json=body)
        assert response.status_code < 300, response.text


async def filters(settings: Settings, *names: str) -> dict[str, tuple[int, int, bool]]:
    headers = {"apikey": settings.api_key}
    out = {}
    async with httpx.AsyncClient(base_url=settings.server_url, headers=headers) as client:
        for name in names:
            got = (await client.get(f"/instance/{name}/filters/audio")).json()
            out[name] = (got["minDurationSeconds"], got["maxDurationSeconds"], got["enabled"])
    return out


async def save_thresholds(app: FilaApp, pilot: Any, low: str, high: str) -> None:
    await wait_for(lambda: isinstance(app.screen, EditThresholds))
    modal = app.screen
    modal.query_one("#min", Input).value = low
    modal.query_one("#max", Input).value = high
    await save_modal(app, pilot, EditThresholds)


async def test_selection_and_whole_fleet_edits_go_through_bulk(live: Settings) -> None:
    for name in ("tui-s1", "tui-s2", "tui-s3"):
        await put_filter(live, name, 3, 7200)
    app = FilaApp(live, poll_seconds=0.5, start="instances")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: all(cells(app, n) for n in ("tui-s1", "tui-s2", "tui-s3")), 60)
        for name in ("tui-s1", "tui-s3"):
            await select_row(app, name)
            await pilot.press("space")
        assert cells(app, "tui-s1")["sel"] == "●"
        assert cells(app, "tui-s2")["sel"] == ""
        await pilot.press("e")
        await save_thresholds(app, pilot, "7", "700")
        assert await filters(live, "tui-s1", "tui-s2", "tui-s3") == {
            "tui-s1": (7, 700, True),
            "tui-s2": (3, 7200, True),
            "tui-s3": (7, 700, True),
        }
        await wait_for(lambda: cells(app, "tui-s3").get("min") == "7", timeout=30)

        await pilot.press("E")  # every known instance
        await save_thresholds(app, pilot, "9", "900")
        got = await filters(live, "tui-s1", "tui-s2", "tui-s3")
        assert set(got.values()) == {(9, 900, True)}
        await wait_for(
            lambda: all(cells(app, n).get("max") == "900" for n in ("tui-s1", "tui-s2", "tui-s3")),
            timeout=30,
        )


async def test_workers_screen_pauses_and_resumes_the_fleet(
    live: Settings, spawn: Callable[..., Proc], redis: Any, keys: Keys
) -> None:
    spawn(["worker", "ingest"], live)
    app = FilaApp(live, poll_seconds=0.5, start="workers")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: bool(app.data.workers), timeout=60)

        def states() -> set[str]:
            return {w.state for w in app.data.workers or []}

        await pilot.press("p")
        await wait_for(lambda: states() == {"paused"}, timeout=60, interval=0.2)
        assert await redis.get(keys.paused)
        table = app.screen.query_one("#workers", DataTable)
        await wait_for(lambda: "paused" in [str(v) for v in table.get_row_at(0)], timeout=30)
        await pilot.press("u")
        await wait_for(lambda: states() == {"running"}, timeout=60, interval=0.2)
        assert not await redis.get(keys.paused)
        await pilot.press("colon", *"pause ingets", "enter")  # a typo is not the whole fleet
        await wait_for(
            lambda: any("unknown role" in n.message for n in app._notifications), timeout=10
        )
        assert not await redis.get(keys.paused) and states() == {"running"}
        await pilot.press("colon", *"pause ingest", "enter")  # one role only
        await wait_for(lambda: states() == {"paused"}, timeout=60, interval=0.2)
        assert not await redis.get(keys.paused)  # a role's pause is not the fleet-wide mark


async def test_webhook_test_button_shows_status_and_time(live: Settings) -> None:
    async with Receiver() as receiver:
        app = FilaApp(live, poll_seconds=0.5, start="webhooks")
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(lambda: app.data.webhook is not None, timeout=60)
            app.screen.query_one("#principal-url", Input).value = receiver.url + "/hook"
            await pilot.click("#test-principal")
            out = app.screen.query_one("#webhook-test", Static)
            await wait_for(lambda: "200" in str(out.render()), timeout=30)
            shown = str(out.render())
            assert "ms" in shown and receiver.url in shown
            assert len(receiver.deliveries) >= 1
            receiver.fail_with(503, times=20)
            button = app.screen.query_one("#test-principal")
            await wait_for(lambda: not button.has_class("-active"))  # a button's press effect
            await pilot.click("#test-principal")
            try:
                await wait_for(lambda: "503" in str(out.render()), timeout=30)
            except AssertionError:
                raise AssertionError(str(out.render())) from None


async def test_emergency_filter_modal_turns_it_on_fleet_wide(live: Settings) -> None:
    app = FilaApp(live, poll_seconds=0.5, start="overview")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.data.overview is not None, timeout=60)
        modal = await open_modal(app, pilot, "x", EditEmergency)
        modal.query_one("#enabled", Switch).value = True
        modal.query_one("#min", Input).value = "400"
        await pilot.pause()
        assert "minDurationSeconds must be between 1 and 300" in str(
            modal.query_one("#errors").render()
        )
        modal.query_one("#min", Input).value = "30"
        modal.query_one("#reason", Input).value = "storm"
        await save_modal(app, pilot, EditEmergency)
        [got] = await admin_get(live, "/filters/emergency")
        assert (got["enabled"], got["minDurationSeconds"], got["reason"]) == (True, 30, "storm")
        await wait_for(
            lambda: app.data.overview is not None and app.data.overview.emergencyFilter, 30
        )
        figures = app.screen.query_one("#figures", Static)
        try:
            await wait_for(lambda: "EMERGENCY FILTER" in _plain(figures), timeout=10)
        except AssertionError:
            raise AssertionError(_plain(figures)) from None


def _plain(widget: Static) -> str:
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(widget.content)
    return console.export_text()


async def test_cleanup_run_now_reports_the_run(live: Settings) -> None:
    """'r' runs a cleanup that keeps young objects; a run that deletes shows its count.

    S3 stamps LastModified itself and retentionDays is at least 1, so nothing uploaded here is
    expired for a run the TUI starts: that run must keep every object and be shown as recorded.
    The deleting run is the service's with `at=` ten years ahead (as in tests/test_cleanup.py).
    """
    async with s3_clients.client(live) as bucket:
        for i in range(4):
            key = f"audio_{1700000000000 + i}_tui-old.ogg"
            await bucket.put_object(Bucket=live.s3_bucket, Key=key, Body=b"OggS")

        async def listed() -> set[str]:
            found = await bucket.list_objects_v2(Bucket=live.s3_bucket)
            return {o["Key"] for o in found.get("Contents", [])}

        before = await listed()
        assert len(before) == 4
        app = FilaApp(live, poll_seconds=0.5, start="cleanup")
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(lambda: app.data.cleanup is not None, timeout=60)
            # The run's database is shared by every test: an earlier run may be on record.
            assert app.data.cleanup is not None
            previous = app.data.cleanup.lastCleanup
            await pilot.press("r")
            await wait_for(
                lambda: (
                    app.data.cleanup is not None
                    and app.data.cleanup.lastCleanup is not None
                    and app.data.cleanup.lastCleanup != previous
                ),
                timeout=60,
            )
            assert app.data.cleanup is not None
            last = app.data.cleanup.lastCleanup
            assert last is not None
            [status] = await admin_get(live, "/cleanup/status")
            recorded = status["lastCleanup"]
            assert recorded == {
                "timestamp": last.timestamp,
                "deletedCount": 0,
                "errorCount": 0,
            }
            assert await listed() == before
            status = app.screen.query_one("#cleanup-status", Static)
            line = f"{last.timestamp} · deleted 0 · errors 0"
            await wait_for(lambda: line in _plain(status), timeout=10)

            rt = await open_runtime(live)
            try:
                far = dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)
                result = await CleanupService(rt).run(trigger="manual", at=far)
            finally:
                await rt.close()
            assert (result.success, result.deletedCount) == (True, 4), result
            assert await listed() == set()
            line = f"{result.executedAt} · deleted 4 · errors 0"
            try:
                await wait_for(lambda: line in _plain(status), timeout=30)
            except AssertionError:
                raise AssertionError(_plain(status)) from None


async def test_feedback_screen_lists_and_cancels_a_session(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    async with EvolutionStub(settings.evolution_api_key) as evolution:
        cp = pointed_at(settings.replace(evolution_url=evolution.url), free_port())
        start_controlplane(spawn, cp)
        await wait_for(lambda: healthy(cp), timeout=90, interval=0.3)
        headers = {"apikey": cp.api_key}
        body = {
            "instance": "tui-fb",
            "chatId": "5511999990000@s.whatsapp.net",
            "messageId": "FB1",
            "processType": "transcription",
        }
        async with httpx.AsyncClient(base_url=cp.server_url, headers=headers) as client:
            started = (await client.post("/process/start", json=body)).json()
        session = started["sessionId"]
        app = FilaApp(cp, poll_seconds=0.5, start="feedback")
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one("#sessions", DataTable)
            try:
                await wait_for(lambda: table.row_count == 1, timeout=60)
            except AssertionError:
                raise AssertionError(f"{started} {app.data.process} {app.data.errors}") from None
            row = [str(c) for c in table.get_row_at(0)]
            assert (row[0], row[3], row[4]) == ("tui-fb", "transcription", session)
            await wait_for(lambda: str(table.get_row_at(0)[1]) in ("🔄", "⏳"), timeout=30)
            await pilot.press("c")
            await wait_for(lambda: table.row_count == 0, timeout=60)
        async with httpx.AsyncClient(base_url=cp.server_url, headers=headers) as client:
            status = (await client.get("/process/status")).json()
        assert status["activeSessionsCount"] == 0


async def test_dead_letters_screen_browses_and_replays(live: Settings) -> None:
    connection = await topology.connect(live)
    try:
        channel = await connection.channel()
        await topology.declare_all(channel, live)
        for i, reason in enumerate(["http_500", "http_500", "timeout"]):
            body = {"id": f"tui-dl:M{i}", "instance": "tui-dl", "audioDuration": 5}
            await channel.default_exchange.publish(
                aio_pika.Message(
                    msgspec.json.encode(body),
                    message_id=f"tui-dl:M{i}",
                    headers={topology.H_REASON: reason, topology.H_STAGE: "delivery"},
                ),
                routing_key=topology.GLOBAL_DLQ,
            )
        app = FilaApp(live, poll_seconds=0.5, start="deadletters")
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one("#letters", DataTable)
            await wait_for(lambda: table.row_count == 3, timeout=60)
            assert {str(table.get_row_at(i)[2]) for i in range(3)} == {"http_500", "timeout"}
            reason = app.screen.query_one("#reason", Input)
            reason.value = "timeout"
            reason.focus()
            await pilot.press("enter")  # browse only that reason
            await wait_for(lambda: table.row_count == 1, timeout=30)
            reason.value = ""  # edited but not applied: the replay is still what is shown
            await pilot.press("escape", "r")  # replay what is shown
            # The reload after it applies the inputs as they are now: the two left, unfiltered.
            await wait_for(lambda: table.row_count == 2, timeout=60)
            assert {str(table.get_row_at(i)[2]) for i in range(2)} == {"http_500"}
        assert await topology.queue_depth(channel, topology.GLOBAL_DLQ) == 2

        async def replayed_one() -> bool:
            return await topology.queue_depth(channel, topology.GLOBAL_QUEUE) == 1

        await wait_for(replayed_one, timeout=30)
        queue = await channel.declare_queue(topology.GLOBAL_QUEUE, passive=True)
        message = await queue.get(no_ack=True, fail=True)
        assert message is not None and message.message_id == "tui-dl:M2"  # the timeout one
    finally:
        await connection.close()


async def test_wrong_api_key_is_said_plainly(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    # The TUI keeps polling with the wrong key: past FILA_AUTH_FAIL_LIMIT it would read 429.
    live = pointed_at(settings.replace(auth_fail_limit=1_000_000), free_port())
    proc = start_controlplane(spawn, live)
    await wait_for(lambda: healthy(live), timeout=90, interval=0.3)
    assert proc.popen.poll() is None
    app = FilaApp(live.replace(api_key="not-the-key"), poll_seconds=0.5, start="instances")
    async with app.run_test(size=(80, 24)):
        banner = app.screen.query_one(ConnectionBanner)
        await wait_for(lambda: banner.display, timeout=30)
        assert "HTTP 401" in str(banner.render())
        await wait_for(lambda: "instances" in app.data.errors, timeout=30)
        assert "401" in app.data.errors["instances"]
        status = app.screen.query_one("#status", Static)
        await wait_for(lambda: "401" in _plain(status), timeout=10)


async def test_schedule_and_webhook_forms_save_or_show_the_servers_refusal(
    live: Settings,
) -> None:
    headers = {"apikey": live.api_key}
    app = FilaApp(live, poll_seconds=0.5, start="cleanup")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: app.data.schedule is not None, timeout=60)
        screen = app.screen
        await wait_for(lambda: screen.query_one("#daily", Input).value != "", timeout=10)
        screen.query_one("#daily", Input).value = "25:99"
        await pilot.click("#save")
        errors = screen.query_one("#schedule-errors", Static)
        await wait_for(lambda: "dailyTime" in _plain(errors), timeout=30)
        screen.query_one("#daily", Input).value = "04:30"
        screen.query_one("#timezone", Input).value = "UTC"
        button = screen.query_one("#save")
        await wait_for(lambda: not button.has_class("-active"))
        await pilot.click("#save")
        await wait_for(lambda: not errors.has_class("visible"), timeout=30)
        async with httpx.AsyncClient(base_url=live.server_url, headers=headers) as client:
            got = (await client.get("/cleanup/schedule")).json()
        assert (got["dailyTime"], got["timezone"]) == ("04:30", "UTC")

        await pilot.press("5")
        await wait_for(lambda: app.current_mode == "webhooks" and app.data.webhook is not None)
        screen = app.screen
        screen.query_one("#principal-url", Input).value = "ftp://files.example.com/in"
        await pilot.click("#save")
        errors = screen.query_one("#webhook-errors", Static)
        await wait_for(lambda: "url" in _plain(errors).lower(), timeout=30)
        screen.query_one("#principal-url", Input).value = "https://hooks.example.com/in"
        screen.query_one("#principal-enabled", Switch).value = True
        button = screen.query_one("#save")
        await wait_for(lambda: not button.has_class("-active"))
        await pilot.click("#save")
        await wait_for(lambda: not errors.has_class("visible"), timeout=30)
        async with httpx.AsyncClient(base_url=live.server_url, headers=headers) as client:
            got = (await client.get("/webhook/global/config")).json()["data"]["principal"]
        assert got == {"enabled": True, "url": "https://hooks.example.com/in"}


async def test_the_instances_table_pages_sorts_and_filters_on_the_control_plane(
    live: Settings, redis: Any, keys: Keys
) -> None:
    counters = Counters(redis, keys, live.timezone)
    pipe = redis.pipeline(transaction=False)
    for n in range(300):
        counters.bump_on(pipe, f"pg-{n:03d}", {"received": (n * 37) % 300})
    await pipe.execute()
    app = FilaApp(live, poll_seconds=0.5, start="instances")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen_stack[0]
        assert isinstance(screen, InstancesScreen)
        await wait_for(lambda: screen.matched >= 300, timeout=60)
        assert screen.table.row_count == screen.limit < 300  # one page came over, not 300 rows
        await pilot.press("slash", *"pg-")
        await wait_for(lambda: screen.matched == 300, timeout=30)
        await pilot.press("enter")
        while screen.sort_key != "received":
            await pilot.press("s")
        await pilot.press("S")  # descending: the busiest first, as the server sorted them

        def top() -> list[int]:
            return [screen.rows[str(r.key.value)].received for r in screen.table.ordered_rows]

        await wait_for(lambda: top()[:1] == [299], timeout=30)
        assert top() == sorted(top(), reverse=True)
        await pilot.press("right_square_bracket")
        await wait_for(lambda: screen.page_offset == screen.limit and top()[0] < 299, timeout=30)
        assert app.data.instances is not None and app.data.instances.offset == screen.limit
        wanted = {f"pg-{n:03d}" for n in range(300) if "29" in f"pg-{n:03d}"}
        screen.query_one("#filter", Input).value = "29"  # a new filter starts at page one
        await wait_for(lambda: set(screen.rows) == wanted, timeout=30)
        assert (screen.matched, screen.page_offset) == (len(wanted), 0)
