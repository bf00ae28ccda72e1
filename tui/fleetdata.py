"""Everything the screens display, in one place: filled by the app's polling, or injected.

Screens only ever render a `FleetData`; whether it came from the control plane or from a test
is none of their business, which keeps rendering deterministic for snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fila.audiofilter import EmergencyFilter
from fila.deadletters import DeadLetter
from fila.fleetquery import InstancesQuery
from fila.history import ConfigHistory
from fila.models import RateLimitConfig, WorkerInfo
from fila.views import FleetOverview, InstancesView
from tui.contract import CleanupSchedule, CleanupStatus, ProcessStatus, WebhookConfigResponse


@dataclass
class FleetData:
    overview: FleetOverview | None = None
    history: list[FleetOverview] = field(default_factory=list)
    """Recent overviews, oldest first (sparklines)."""
    instances: InstancesView | None = None
    instancesQuery: InstancesQuery = field(default_factory=InstancesQuery)
    """The page the instances screen shows (sent to the control plane as query parameters)."""
    workers: list[WorkerInfo] | None = None
    process: ProcessStatus | None = None
    cleanup: CleanupStatus | None = None
    schedule: CleanupSchedule | None = None
    webhook: WebhookConfigResponse | None = None
    deadLetters: list[DeadLetter] | None = None
    ratelimit: RateLimitConfig | None = None
    emergency: EmergencyFilter | None = None
    changes: ConfigHistory | None = None
    """Fleet-wide configuration history, newest first."""
    errors: dict[str, str] = field(default_factory=dict)
    """Feed name → the last error fetching it (shown by the screen that needs it)."""

    HISTORY = 120

    def add_overview(self, overview: FleetOverview) -> None:
        self.overview = overview
        self.history.append(overview)
        del self.history[: -self.HISTORY]

    @property
    def now(self) -> float:
        """The data's own clock (server time of the last overview or table)."""
        stamps = [self.overview.timestamp if self.overview else 0.0]
        stamps.append(self.instances.generatedAt if self.instances else 0.0)
        return max(stamps)
