"""Fleet-wide JSON documents kept in `config_entry` (rate limit, emergency filter)."""

from __future__ import annotations

from typing import Any

from controlplane.clock import now
from controlplane.tables import ConfigEntry

RATELIMIT = "ratelimit"
EMERGENCY = "emergency"


async def load(key: str) -> dict[str, Any] | None:
    row = await ConfigEntry.select(ConfigEntry.value).where(ConfigEntry.key == key).first()
    if row is None:
        return None
    value = row["value"]
    if isinstance(value, str):
        import json

        value = json.loads(value)
    return value if isinstance(value, dict) else None


async def store(key: str, value: dict[str, Any]) -> None:
    await (
        ConfigEntry.insert(ConfigEntry(key=key, value=value, updated_at=now()))
        .on_conflict(
            target=ConfigEntry.key,
            action="DO UPDATE",
            values=[ConfigEntry.value, ConfigEntry.updated_at],
        )
        .run()
    )
