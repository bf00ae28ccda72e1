"""Global webhooks: edit both targets, test each with status and response time."""

from __future__ import annotations

from typing import Literal

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal
from textual.widgets import Button, Input, Label, Static, Switch

from tui.client import ControlPlaneError, Unreachable
from tui.contract import WebhookConfigResponse
from tui.fleetdata import FleetData
from tui.oneatatime import one_at_a_time
from tui.screens.base import FilaScreen

Kind = Literal["principal", "monitoramento"]


class WebhooksScreen(FilaScreen):
    AUTO_FOCUS = ""  # digits keep switching screens until a field is clicked

    def __init__(self) -> None:
        super().__init__()
        self.filled = False

    def compose_body(self) -> ComposeResult:
        with Grid(classes="form wide"):
            yield Label("main (principal)")
            yield Input(id="principal-url", placeholder="https://…")
            yield Switch(False, id="principal-enabled")
            yield Label("monitoring")
            yield Input(id="monitoramento-url", placeholder="https://…")
            yield Switch(False, id="monitoramento-enabled")
        with Horizontal(classes="buttons"):
            yield Button("Save", id="save", variant="primary")
            yield Button("Test main", id="test-principal")
            yield Button("Test monitoring", id="test-monitoramento")
        yield Static("", id="webhook-errors", classes="errors")
        yield Static(id="webhook-test")
        yield Static(id="webhook-meta")

    async def on_screen_resume(self) -> None:
        await super().on_screen_resume()
        await self.fila.load("webhook")

    def refresh_from(self, data: FleetData) -> None:
        meta = self.query_one("#webhook-meta", Static)
        if data.webhook is None:
            meta.update(Text(data.errors.get("webhook", "waiting for the control plane…")))
            return
        if not self.filled:
            self._fill(data.webhook)
        config = data.webhook.data
        meta.update(f"updated {config.updatedAt or '–'}")

    def _fill(self, response: WebhookConfigResponse) -> None:
        self.filled = True
        config = response.data
        targets = (("principal", config.principal), ("monitoramento", config.monitoramento))
        for kind, target in targets:
            self.query_one(f"#{kind}-url", Input).value = target.url
            self.query_one(f"#{kind}-enabled", Switch).value = target.enabled

    def _target(self, kind: Kind) -> dict[str, object]:
        return {
            "enabled": self.query_one(f"#{kind}-enabled", Switch).value,
            "url": self.query_one(f"#{kind}-url", Input).value.strip(),
        }

    @on(Button.Pressed, "#save")
    @work(group="save")
    @one_at_a_time
    async def _save(self) -> None:
        client = self.fila.client
        if client is None:
            return
        changes = {kind: self._target(kind) for kind in ("principal", "monitoramento")}
        try:
            saved = await client.set_webhook_config(changes)
        except (ControlPlaneError, Unreachable) as exc:
            self._refused(f"server refused: {exc}")
            return
        self._refused(None)
        self.fila.data.webhook = saved
        self._fill(saved)
        self.notify("webhook configuration saved", title="webhooks")

    def _refused(self, message: str | None) -> None:
        box = self.query_one("#webhook-errors", Static)
        box.update(Text(f"✗ {message}" if message else ""))
        box.set_class(message is not None, "visible")

    @on(Button.Pressed, "#test-principal")
    def _test_principal(self) -> None:
        self.test("principal")

    @on(Button.Pressed, "#test-monitoramento")
    def _test_monitoring(self) -> None:
        self.test("monitoramento")

    @work(group="test")
    @one_at_a_time
    async def test(self, kind: Kind) -> None:
        client = self.fila.client
        out = self.query_one("#webhook-test", Static)
        url = str(self._target(kind)["url"])
        if client is None or not url:
            out.update(Text(f"{kind}: no URL to test"))
            return
        out.update(Text(f"{kind}: testing {url}…"))
        try:
            result = await client.test_webhook(url, kind)
        except (ControlPlaneError, Unreachable) as exc:
            out.update(Text(f"{kind}: {exc}", style="red"))
            return
        d = result.data
        colour = "green" if d.success else "red"
        line = f"{kind}: {d.statusCode or '–'} {d.statusText} in {d.responseTime}"
        if d.error:
            line += f" · {d.error}"
        out.update(Text.assemble((line, colour), f" · {d.url} · {d.testedAt}"))
