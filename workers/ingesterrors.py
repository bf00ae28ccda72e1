"""Why an ingest event could not be queued, and whether trying again can help."""

from __future__ import annotations


class IngestError(Exception):
    """`reason` is the dead letter's machine-readable reason; `transient` asks for a retry."""

    def __init__(self, reason: str, detail: str = "", *, transient: bool = False) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.transient = transient
        self.admitted = False
        """Set once the event had its token: a retry must not take another."""
