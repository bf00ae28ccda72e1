"""Modal (`h` on the instances screen): the configuration history of one instance, including
the bulk changes and imports that set it."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from fila.history import ConfigChange, instance_target
from tui.client import ControlPlaneError, Unreachable
from tui.widgets.historytable import HistoryTable

if TYPE_CHECKING:
    from tui.app import FilaApp


class InstanceHistory(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,h,q", "close", "Close")]

    def __init__(self, instance: str) -> None:
        super().__init__(classes="modal")
        self.instance = instance

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog history-dialog"):
            yield Static(f"[b]History of {self.instance}[/b]", markup=True)
            yield Static("loading…", id="instance-history-status")
            yield HistoryTable(id="instance-history")

    async def on_mount(self) -> None:
        app = cast("FilaApp", self.app)
        status = self.query_one("#instance-history-status", Static)
        target = instance_target(self.instance)
        changes: list[ConfigChange]
        if app.client is None:  # a fixed fleet (demo, snapshots): what it holds
            held = app.data.changes.changes if app.data.changes else []
            changes = [c for c in held if c.target == target or self.instance in c.instances]
        else:
            try:
                changes = (await app.client.config_history(target=target)).changes
            except (ControlPlaneError, Unreachable) as exc:
                status.update(Text(f"history: {exc}", style="red"))
                return
        self.query_one("#instance-history", HistoryTable).show(changes)
        status.update(f"{len(changes)} changes, newest first · Esc to close")

    def action_close(self) -> None:
        self.dismiss(None)
