"""Modal: the global token bucket and how it is shared (reserve, burst, window), applied live."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.widgets import Input, Label, Select

from fila.models import RateLimitConfig
from tui.rules import RATELIMIT_RULES, ratelimit_errors
from tui.screens.form import FormModal

if TYPE_CHECKING:
    from tui.client import FilaClient


class EditRateLimit(FormModal):
    rules = RATELIMIT_RULES

    def __init__(self, current: RateLimitConfig | None) -> None:
        super().__init__()
        self.current = current or RateLimitConfig()

    def title_markup(self) -> str:
        return "[b]Global rate limit[/b] (token bucket, fair share under contention)"

    def fields(self) -> ComposeResult:
        c = self.current
        yield Label("capacity")
        yield Input(str(c.capacity), id="capacity", type="integer")
        yield Label("refill / min")
        yield Input(f"{c.refillPerMinute:g}", id="refill", type="number")
        yield Label("policy")
        yield Select(
            [("reject", "reject"), ("defer", "defer")],
            value=c.policy,
            allow_blank=False,
            id="policy",
        )
        yield Label("reserve %")
        yield Input(str(c.reservePercent), id="reserve", type="integer")
        yield Label("burst / weight")
        yield Input(str(c.instanceCapacity), id="burst", type="integer")
        yield Label("active window s")
        yield Input(str(c.activeWindowSeconds), id="window", type="integer")

    def _values(self) -> tuple[str, str, str, str, str, str]:
        policy = self.query_one("#policy", Select).value
        return (
            self.query_one("#capacity", Input).value,
            self.query_one("#refill", Input).value,
            str(policy),
            self.query_one("#reserve", Input).value,
            self.query_one("#burst", Input).value,
            self.query_one("#window", Input).value,
        )

    def errors(self) -> list[str]:
        return ratelimit_errors(*self._values())

    async def submit(self, client: FilaClient) -> str:
        capacity, refill, policy, reserve, burst, window = self._values()
        changes = {
            "capacity": int(capacity),
            "refillPerMinute": float(refill),
            "policy": policy,
            "reservePercent": int(reserve),
            "instanceCapacity": int(burst),
            "activeWindowSeconds": int(window),
        }
        saved = await client.set_ratelimit(changes)
        return (
            f"{saved.capacity} tokens, {saved.refillPerMinute:g}/min, {saved.policy},"
            f" reserve {saved.reservePercent} %"
        )
