"""Modal: the global token bucket (capacity, refill per minute, policy), applied live."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from fila.models import RateLimitConfig
from tui.client import ControlPlaneError, Unreachable
from tui.rules import RATELIMIT_RULES, ratelimit_errors

if TYPE_CHECKING:
    from tui.app import FilaApp


class EditRateLimit(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    def __init__(self, current: RateLimitConfig | None) -> None:
        super().__init__(classes="modal")
        self.current = current or RateLimitConfig()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("[b]Global rate limit[/b] (token bucket)")
            with Grid(classes="form"):
                yield Label("capacity")
                yield Input(str(self.current.capacity), id="capacity", type="integer")
                yield Label("refill / min")
                yield Input(f"{self.current.refillPerMinute:g}", id="refill", type="number")
                yield Label("policy")
                yield Select(
                    [("reject", "reject"), ("defer", "defer")],
                    value=self.current.policy,
                    allow_blank=False,
                    id="policy",
                )
            yield Label(RATELIMIT_RULES, classes="rule")
            yield Static("", id="errors", classes="errors")
            with Horizontal(classes="buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")

    def _values(self) -> tuple[str, str, str]:
        policy = self.query_one("#policy", Select).value
        return (
            self.query_one("#capacity", Input).value,
            self.query_one("#refill", Input).value,
            str(policy),
        )

    def _show(self, problems: list[str]) -> None:
        box = self.query_one("#errors", Static)
        box.update(Text("\n".join(f"✗ {p}" for p in problems)))
        box.set_class(bool(problems), "visible")

    @on(Input.Changed)
    def _changed(self) -> None:
        self._show(ratelimit_errors(*self._values()))

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        problems = ratelimit_errors(*self._values())
        self._show(problems)
        if not problems:
            self._send()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    @work(exclusive=True, group="save")
    async def _send(self) -> None:
        client = cast("FilaApp", self.app).client
        if client is None:
            self._show(["read-only: no control plane (injected data)"])
            return
        capacity, refill, policy = self._values()
        changes = {
            "capacity": int(capacity),
            "refillPerMinute": float(refill),
            "policy": policy,
        }
        try:
            saved = await client.set_ratelimit(changes)
        except (ControlPlaneError, Unreachable) as exc:
            self._show([f"server refused: {exc}"])
            return
        self.dismiss(f"{saved.capacity} tokens, {saved.refillPerMinute:g}/min, {saved.policy}")
