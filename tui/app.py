"""`FilaApp`: the operator console. Collects data (live stream + polling) apart from rendering.

Workers fetch what the current screen names in its `FEEDS` and store it in one `FleetData`;
screens only render that. Given `fixed` data the app fetches nothing (tests, snapshots).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Literal

from textual.app import App
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.screen import Screen

from fila.audiofilter import AudioFilter
from fila.settings import Settings
from fila.views import InstanceRow
from tui.client import ControlPlaneError, Disconnected, FilaClient, Role, Unreachable
from tui.commands import FilaCommands
from tui.fleetdata import FleetData
from tui.screens.base import FilaScreen
from tui.screens.cleanup import CleanupScreen
from tui.screens.command_bar import CommandBar
from tui.screens.deadletters import DeadLettersScreen
from tui.screens.edit_emergency import EditEmergency
from tui.screens.edit_ratelimit import EditRateLimit
from tui.screens.edit_thresholds import EditThresholds
from tui.screens.edit_weight import EditWeight
from tui.screens.feedback import FeedbackScreen
from tui.screens.help import HelpScreen
from tui.screens.history import HistoryScreen
from tui.screens.instances import InstancesScreen
from tui.screens.overview import OverviewScreen
from tui.screens.webhooks import WebhooksScreen
from tui.screens.workers import WorkersScreen

FETCH: dict[str, Callable[[FilaClient, FleetData], Awaitable[Any]]] = {
    "instances": lambda c, d: c.instances(d.instancesQuery),
    "workers": lambda c, d: c.workers(),
    "process": lambda c, d: c.process_status(),
    "cleanup": lambda c, d: c.cleanup_status(),
    "schedule": lambda c, d: c.cleanup_schedule(),
    "webhook": lambda c, d: c.webhook_config(),
    "ratelimit": lambda c, d: c.ratelimit(),
    "emergency": lambda c, d: c.emergency(),
    "changes": lambda c, d: c.config_history(),
}
"""Feed name (a `FleetData` field) → how to fetch it."""

Control = Literal["pause", "resume", "drain"]

GC_YOUNG = 20_000
"""Allocations between collections of the youngest generation while the app runs."""

SCREENS: dict[str, tuple[str, type[FilaScreen]]] = {
    "overview": ("1", OverviewScreen),
    "instances": ("2", InstancesScreen),
    "feedback": ("3", FeedbackScreen),
    "cleanup": ("4", CleanupScreen),
    "webhooks": ("5", WebhooksScreen),
    "deadletters": ("6", DeadLettersScreen),
    "workers": ("7", WorkersScreen),
    "history": ("8", HistoryScreen),
}


class FilaApp(App[None]):
    CSS_PATH = "fila.tcss"
    TITLE = "Fila"
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {
        name: cls for name, (_, cls) in SCREENS.items()
    }
    COMMANDS = App.COMMANDS | {FilaCommands}
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        *(
            Binding(key, f"show('{name}')", name.capitalize(), show=False)
            for name, (key, _) in SCREENS.items()
        ),
        Binding("question_mark", "help", "Help"),
        Binding("colon", "command_bar", "Cmd"),
        Binding("q", "quit", "Quit"),
    ]

    connection_error: reactive[str | None] = reactive(None)
    """Why the control plane cannot be reached, None while it answers."""

    def __init__(
        self,
        settings: Settings,
        *,
        fixed: FleetData | None = None,
        poll_seconds: float = 1.0,
        start: str = "overview",
    ) -> None:
        super().__init__()
        self.settings = settings
        self.data = fixed if fixed is not None else FleetData()
        self.client = None if fixed is not None else FilaClient(settings)
        self.poll_seconds = poll_seconds
        self.start = start
        self.sub_title = settings.server_url
        self._gc_threshold = gc.get_threshold()

    async def on_mount(self) -> None:
        await self.switch_mode(self.start)
        self._tune_gc()
        if self.client is not None:
            self.run_worker(self._follow_stream(), name="stream", group="feeds")
            self.run_worker(self._poll(), name="poll", group="feeds")

    async def on_unmount(self) -> None:
        gc.set_threshold(*self._gc_threshold)
        gc.unfreeze()
        if self.client is not None:
            await self.client.aclose()

    def _tune_gc(self) -> None:
        """Keep the garbage collector out of the 500-row refresh (tens of ms a pass).

        A refresh makes tens of thousands of short-lived objects: collecting the young every
        700 allocations (CPython's default) promoted them, and full passes over the old then
        stalled one refresh in 10-15 by 50-120 ms. What exists by now lives as long as
        the app, so it leaves the full passes altogether.
        """
        self._gc_threshold = gc.get_threshold()
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG, *self._gc_threshold[1:])

    @property
    def tabs(self) -> list[tuple[str, str]]:
        """(key, screen name) of every screen, for the tab strip."""
        return [(key, name) for name, (key, _) in SCREENS.items()]

    # ------------------------------------------------------------ data collection

    @property
    def page(self) -> FilaScreen | None:
        """The current mode's own screen (under any modal)."""
        stack = self.screen_stack
        return stack[0] if stack and isinstance(stack[0], FilaScreen) else None

    def render_page(self) -> None:
        page = self.page
        if page is None or not page.is_mounted:
            return
        try:
            page.refresh_from(self.data)
        except NoMatches:
            # Its widgets are not there yet, or no longer (the app quitting while a stream
            # item arrives): the next render fills the page; a crash would end the TUI.
            return

    async def _follow_stream(self) -> None:
        assert self.client is not None
        async for item in self.client.stream():
            if isinstance(item, Disconnected):
                self.connection_error = f"{item.reason}; retrying in {item.retryIn:g}s"
                continue
            self.connection_error = None
            self.data.add_overview(item)
            page = self.page
            if page is not None and "overview" in page.FEEDS:
                self.render_page()

    async def _poll(self) -> None:
        while True:
            page = self.page
            if page is not None:
                await self.load(*(f for f in page.FEEDS if f in FETCH))
            await asyncio.sleep(self.poll_seconds)

    async def load(self, *feeds: str) -> None:
        """Fetch these feeds now and render the current screen with them."""
        if self.client is None or not feeds:
            return
        client = self.client
        results = await asyncio.gather(
            *(FETCH[f](client, self.data) for f in feeds), return_exceptions=True
        )
        for feed, result in zip(feeds, results, strict=True):
            if isinstance(result, Unreachable):
                self.connection_error = str(result)
            elif isinstance(result, ControlPlaneError):
                self.data.errors[feed] = f"{feed}: HTTP {result.status} {result}"
            elif isinstance(result, Exception):  # shown, never a traceback over the screens
                self.data.errors[feed] = f"{feed}: {type(result).__name__}: {result}"
            elif isinstance(result, BaseException):
                raise result
            else:
                setattr(self.data, feed, result)
                self.data.errors.pop(feed, None)
                self.connection_error = None
        self.render_page()

    # ------------------------------------------------------------ navigation

    async def action_show(self, name: str) -> None:
        if name in SCREENS and name != self.current_mode:
            await self.switch_mode(name)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(SCREENS))

    def action_command_bar(self) -> None:
        self.push_screen(CommandBar(list(SCREENS)), self._command)

    async def _command(self, line: str | None) -> None:
        if line:
            await self.run_command(line)

    async def run_command(self, line: str) -> None:
        """`:`-commands: a screen name (or its prefix), or an action (`pause ingest`…)."""
        word, _, rest = line.strip().lower().partition(" ")
        controls: dict[str, Control] = {"pause": "pause", "resume": "resume", "drain": "drain"}
        roles: dict[str, Role] = {"ingest": "ingest", "delivery": "delivery"}
        if word in controls and rest.strip():
            # A fleet-wide order only when no role is named: a mistyped role must not widen it.
            if rest.strip() not in roles:
                self.notify(
                    f"unknown role {rest.strip()!r}: ingest or delivery", severity="warning"
                )
                return
            await self.action_control(controls[word], roles[rest.strip()])
            return
        actions: dict[str, Callable[[], Any]] = {
            "quit": self.exit,
            "q": self.exit,
            "ratelimit": self.action_edit_ratelimit,
            "emergency": self.action_edit_emergency,
            "pause": lambda: self.action_control("pause", None),
            "resume": lambda: self.action_control("resume", None),
            "drain": lambda: self.action_control("drain", None),
            "help": self.action_help,
        }
        if word in actions:
            result = actions[word]()
            if asyncio.iscoroutine(result):
                await result
            return
        matches = [name for name in SCREENS if name.startswith(word)] if word else []
        if len(matches) == 1:
            await self.action_show(matches[0])
        else:
            self.notify(f"unknown command {line!r}", severity="warning")

    # ------------------------------------------------------------ editing

    def edit_thresholds(self, instances: list[str] | None, row: InstanceRow | None) -> None:
        defaults = self.settings
        current = AudioFilter(
            minDurationSeconds=row.minDurationSeconds if row else defaults.audio_min_seconds,
            maxDurationSeconds=row.maxDurationSeconds if row else defaults.audio_max_seconds,
            enabled=row.enabled if row else True,
        )
        self.push_screen(EditThresholds(instances, current), self._applied)

    async def _applied(self, summary: str | None) -> None:
        if summary:
            self.notify(summary, title="thresholds")
            page = self.page
            if page is not None:
                await self.load(*(f for f in page.FEEDS if f in FETCH))

    def edit_weight(self, instance: str, current: int) -> None:
        self.push_screen(EditWeight(instance, current), self._applied)

    async def action_edit_ratelimit(self) -> None:
        if await self._loaded("ratelimit"):
            self.push_screen(EditRateLimit(self.data.ratelimit), self._notified("rate limit"))

    async def action_edit_emergency(self) -> None:
        if await self._loaded("emergency"):
            self.push_screen(EditEmergency(self.data.emergency), self._notified("emergency filter"))

    async def _loaded(self, feed: str) -> bool:
        """Fresh from the control plane; an editor opened on defaults would save over the truth."""
        setattr(self.data, feed, None)
        await self.load(feed)
        if getattr(self.data, feed) is None:
            error = self.data.errors.get(feed) or self.connection_error or "no answer"
            self.notify(str(error), severity="error", title=f"{feed} editor not opened")
            return False
        return True

    def _notified(self, title: str) -> Callable[[str | None], None]:
        def done(summary: str | None) -> None:
            if summary:
                self.notify(summary, title=title)

        return done

    async def action_control(self, action: Control, role: Role | None) -> None:
        if self.client is None:
            self.notify("read-only: no control plane", severity="warning")
            return
        try:
            seq = await self.client.control(action, role)
        except (ControlPlaneError, Unreachable) as exc:
            self.notify(f"{action}: {exc}", severity="error")
            return
        self.notify(f"{action} sent to {role or 'all'} workers (seq {seq})", title="workers")
