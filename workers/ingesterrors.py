"""Why an ingest event could not be queued, and whether trying again can help."""

from __future__ import annotations

from fila.holds import Dependency


class IngestError(Exception):
    """`reason` is the dead letter's machine-readable reason; `transient` asks for a retry."""

    def __init__(
        self,
        reason: str,
        detail: str = "",
        *,
        transient: bool = False,
        dependency: Dependency | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.transient = transient
        self.dependency = dependency
        """Set when a shared dependency failed, not the event: it waits, spending no attempt."""
        self.admitted = False
        """Set once the event had its token: a retry must not take another."""
