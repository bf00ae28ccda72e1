"""The instances table and navigation, driven by injected data (no control plane needed).

These check the table's behaviour itself: cells change in place, rows are only ever added,
the cursor stays put, filtering and sorting, and the k9s-style navigation.
"""

from __future__ import annotations

import msgspec
from textual.widgets import DataTable

from fila.settings import Settings
from fila.views import InstanceRow, InstancesView
from tests.support import wait_for
from tui import demo
from tui.app import FilaApp
from tui.screens.help import HelpScreen
from tui.screens.instances import InstancesScreen


def page(app: FilaApp) -> InstancesScreen:
    screen = app.screen_stack[0]
    assert isinstance(screen, InstancesScreen)
    return screen


def row_text(table: DataTable[object], key: str) -> dict[str, str]:
    keys = [str(c.value) for c in table.columns]
    return {k: getattr(v, "plain", str(v)) for k, v in zip(keys, table.get_row(key), strict=True)}


async def test_refresh_changes_cells_in_place_and_the_table_holds_one_page() -> None:
    app = FilaApp(Settings(), fixed=demo.fleet(5000), start="instances")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = page(app)
        table = screen.table
        await wait_for(lambda: table.row_count == screen.limit)
        assert 20 <= screen.limit <= 40  # what fits on screen, not the 5,000
        table.move_cursor(row=12)
        order = [str(r.key.value) for r in table.ordered_rows]
        cleared: list[bool] = []
        table.clear = lambda columns=False: cleared.append(True) or table  # type: ignore[method-assign]

        view = demo.instances(5000, tick=5)
        newcomer = InstanceRow(instance="zz-new", received=1, lastSeen=view.generatedAt)
        view = InstancesView(instances=[*view.instances, newcomer], generatedAt=view.generatedAt)
        app.data.instances = view
        screen.refresh_from(app.data)
        await pilot.pause()

        assert cleared == []  # same rows on the page: cells changed in place
        assert [str(r.key.value) for r in table.ordered_rows] == order
        assert table.cursor_row == 12
        expected = view.instances[7]
        assert row_text(table, "inst-007")["received"] == f"{expected.received:,}"
        assert screen.total == 5001
        assert "1–" in screen.status_text and "of 5,001" in screen.status_text


async def test_filter_as_you_type_sort_by_header_and_page() -> None:
    app = FilaApp(Settings(), fixed=demo.fleet(500), start="instances")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = page(app)
        await pilot.press("slash", *"inst-04")
        await wait_for(lambda: screen.table.row_count == 10)
        assert screen.matched == 10
        await pilot.press("enter")
        assert app.focused is screen.table
        await pilot.click("#instances", offset=(30, 0))  # a header cell: sort by that column
        await pilot.pause()
        assert screen.sort_key not in (None, "sel", "instance")
        key = screen.sort_key
        assert key is not None
        values = [
            msgspec.structs.asdict(screen.rows[str(r.key.value)]) for r in screen.table.ordered_rows
        ]
        field = {"min": "minDurationSeconds", "max": "maxDurationSeconds", "tokens": "tokens"}
        column = [v[field.get(key, key)] for v in values]
        assert column == sorted(column), (
            key,
            [str(r.key.value) for r in screen.table.ordered_rows],
            column,
        )

        await pilot.press("escape", "slash")
        screen.query_one("#filter").clear()  # type: ignore[attr-defined]
        await wait_for(lambda: screen.matched == 500)
        await pilot.press("escape")
        first = [str(r.key.value) for r in screen.table.ordered_rows]
        await pilot.press("right_square_bracket")
        await wait_for(lambda: screen.page_offset == screen.limit)
        second = [str(r.key.value) for r in screen.table.ordered_rows]
        assert len(second) == screen.limit and not set(first) & set(second)
        await pilot.press("left_square_bracket")
        await wait_for(lambda: [str(r.key.value) for r in screen.table.ordered_rows] == first)


async def test_colon_commands_palette_and_help_navigate() -> None:
    app = FilaApp(Settings(), fixed=demo.fleet(50), start="overview")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("colon", *"work", "enter")
        await wait_for(lambda: app.current_mode == "workers")
        await pilot.press("colon", *"dead", "enter")
        await wait_for(lambda: app.current_mode == "deadletters")
        await pilot.press("escape", "2")
        await wait_for(lambda: app.current_mode == "instances")
        await pilot.press("question_mark")
        await wait_for(lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        await wait_for(lambda: not isinstance(app.screen, HelpScreen))
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Go to cleanup")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(lambda: app.current_mode == "cleanup", timeout=20)


async def test_server_messages_with_brackets_are_shown_verbatim() -> None:
    app = FilaApp(Settings(), fixed=demo.fleet(5), start="instances")
    async with app.run_test(size=(120, 24)) as pilot:
        message = "instances: bad response at `$.instances[0]` [red]x[/red]"
        app.data.errors["instances"] = message
        app.render_page()
        await pilot.pause()
        status = app.screen.query_one("#status")
        assert message in status.render().plain  # type: ignore[union-attr]


async def test_select_shown_marks_every_shown_row_then_clears() -> None:
    app = FilaApp(Settings(), fixed=demo.fleet(500), start="instances")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = page(app)
        table = screen.table
        await pilot.press("A")
        await pilot.pause()
        assert screen.selected == set(screen.shown)
        assert {row_text(table, name)["sel"] for name in screen.shown} == {"●"}
        await pilot.press("A")
        await pilot.pause()
        assert screen.selected == set()
        assert {row_text(table, name)["sel"] for name in screen.shown} == {""}


async def test_a_render_while_a_page_loses_its_widgets_is_skipped_not_a_crash() -> None:
    """A stream item can arrive while the app quits and removes the page's widgets: the render
    is skipped (the next one fills the page) instead of ending the TUI with NoMatches."""
    app = FilaApp(Settings(), fixed=demo.fleet(50), start="workers")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(lambda: app.page is not None and app.page.is_mounted)
        page = app.page
        assert page is not None
        app.render_page()  # whole: fills the summary
        summary = page.query_one("#workers-summary")
        await summary.remove()
        await pilot.pause()
        app.render_page()  # the summary is gone: skipped, no exception
        assert not page.query("#workers-summary")
