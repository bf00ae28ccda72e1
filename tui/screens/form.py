"""Modal form of the edit screens: rules checked as you type, nothing sent until they hold."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from tui.client import ControlPlaneError, Unreachable
from tui.oneatatime import one_at_a_time

if TYPE_CHECKING:
    from tui.app import FilaApp
    from tui.client import FilaClient


class FormModal(ModalScreen[str | None]):
    """A screen names its title, fields, rules and request; this owns the rest of the dialog."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    rules: ClassVar[str]
    title_id: ClassVar[str | None] = None
    rule_id: ClassVar[str | None] = None

    def __init__(self) -> None:
        super().__init__(classes="modal")

    def title_markup(self) -> str:
        raise NotImplementedError

    def fields(self) -> ComposeResult:
        raise NotImplementedError

    def errors(self) -> list[str]:
        raise NotImplementedError

    async def submit(self, client: FilaClient) -> str:
        """Send the checked values; return the line to dismiss with."""
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_markup(), id=self.title_id)
            with Grid(classes="form"):
                yield from self.fields()
            yield Label(self.rules, id=self.rule_id, classes="rule")
            yield Static("", id="errors", classes="errors")
            with Horizontal(classes="buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")

    def _show(self, problems: list[str]) -> None:
        box = self.query_one("#errors", Static)
        box.update(Text("\n".join(f"✗ {p}" for p in problems)))
        box.set_class(bool(problems), "visible")

    @on(Input.Changed)
    def _changed(self) -> None:
        self._show(self.errors())

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        problems = self.errors()
        self._show(problems)
        if not problems:
            self._send()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @work(group="save")
    @one_at_a_time
    async def _send(self) -> None:
        client = cast("FilaApp", self.app).client
        if client is None:
            self._show(["read-only: no control plane (injected data)"])
            return
        try:
            done = await self.submit(client)
        except (ControlPlaneError, Unreachable) as exc:
            self._show([f"server refused: {exc}"])
            return
        self.dismiss(done)
