"""Command palette entries (ctrl+p): every screen and every fleet-wide action."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from tui.app import FilaApp

SCREEN_HELP = {
    "overview": "queue, rates, tokens, alerts, health",
    "instances": "all instances, live counts and thresholds",
    "feedback": "processing-feedback sessions",
    "cleanup": "S3 cleanup schedule and runs",
    "webhooks": "global webhook config and test",
    "deadletters": "browse and replay dead letters",
    "workers": "heartbeats, pause / resume / drain",
}


class FilaCommands(Provider):
    def _entries(self) -> list[tuple[str, str, Callable[[], Awaitable[Any] | Any]]]:
        app = cast("FilaApp", self.app)
        entries: list[tuple[str, str, Callable[[], Awaitable[Any] | Any]]] = [
            (f"Go to {name}", text, partial(app.action_show, name))
            for name, text in SCREEN_HELP.items()
        ]
        entries += [
            ("Edit global rate limit", "capacity, refill, policy", app.action_edit_ratelimit),
            ("Edit emergency filter", "fleet-wide audio override", app.action_edit_emergency),
            ("Edit thresholds of every instance", "bulk audio filter", self._edit_all),
            ("Pause workers", "stop taking messages", lambda: app.action_control("pause", None)),
            ("Resume workers", "take messages again", lambda: app.action_control("resume", None)),
            (
                "Drain workers",
                "finish in-flight then stop",
                lambda: app.action_control("drain", None),
            ),
        ]
        return entries

    def _edit_all(self) -> None:
        """From the fleet defaults, as `E` does: one instance's values must not spread."""
        cast("FilaApp", self.app).edit_thresholds(None, None)

    async def discover(self) -> Hits:
        for title, text, run in self._entries():
            yield DiscoveryHit(title, run, help=text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, text, run in self._entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), run, help=text)
