"""The configuration history as `GET /config/history` answers it (control plane, TUI and CLI).

One definition for both ends; old and new values are JSON as stored, secrets already masked.
"""

from __future__ import annotations

from typing import Any

import msgspec

FLEET = "fleet"
"""Target of pause/resume/drain."""
IMPORT = "import"
BULK = "filters"
"""Target of a bulk filter change (the instances it set are listed)."""


def instance_target(name: str) -> str:
    """Target of one instance's filter; `target=instance:<name>` also finds bulk and imports."""
    return f"instance:{name}"


class ConfigChange(msgspec.Struct, kw_only=True):
    """One recorded change."""

    id: int
    at: str
    """ISO 8601 with offset."""
    route: str
    """`PUT /instance/{instance}/filters/audio`: the route that made the change."""
    caller: str
    """The key's role and fingerprint (`admin sha256:…`), never the key."""
    address: str
    target: str
    instances: list[str] = msgspec.field(default_factory=list)
    old: Any = None
    new: Any = None


class ConfigHistory(msgspec.Struct, kw_only=True):
    changes: list[ConfigChange]
    count: int
