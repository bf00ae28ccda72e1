"""The audio-duration filter, all of it: bounds, defaults, the verdict and the emergency override.

The control plane validates with it, workers judge with it, the TUI checks input with it and
the OpenAPI document shows its bounds, so the contract's 1-300 / ≤ 7200 is written once.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

MIN_SECONDS_MIN, MIN_SECONDS_MAX, MAX_SECONDS_MAX = 1, 300, 7200
"""The contract's rule: 1 ≤ min ≤ 300; min ≤ max ≤ 7200."""
DEFAULT_MIN_SECONDS, DEFAULT_MAX_SECONDS = 3, 7200
"""What an instance never configured gets (FILA_AUDIO_MIN/MAX_SECONDS can change it)."""
RULE = f"{MIN_SECONDS_MIN} ≤ min ≤ {MIN_SECONDS_MAX} and min ≤ max ≤ {MAX_SECONDS_MAX} (seconds)"

MinSeconds = Annotated[int, msgspec.Meta(ge=MIN_SECONDS_MIN, le=MIN_SECONDS_MAX)]
MaxSeconds = Annotated[int, msgspec.Meta(ge=MIN_SECONDS_MIN, le=MAX_SECONDS_MAX)]
"""The same bounds as msgspec constraints: request bodies and the OpenAPI document use them."""

Verdict = Literal["ok", "tooShort", "tooLong"]


class AudioFilter(msgspec.Struct, kw_only=True):
    minDurationSeconds: int = DEFAULT_MIN_SECONDS
    maxDurationSeconds: int = DEFAULT_MAX_SECONDS
    enabled: bool = True

    def verdict(self, seconds: int) -> Verdict:
        if not self.enabled:
            return "ok"
        if seconds < self.minDurationSeconds:
            return "tooShort"
        if seconds > self.maxDurationSeconds:
            return "tooLong"
        return "ok"


class EmergencyFilter(msgspec.Struct, kw_only=True):
    """Fleet-wide override of every instance's audio filter while enabled."""

    enabled: bool = False
    minDurationSeconds: int = DEFAULT_MIN_SECONDS
    maxDurationSeconds: int = DEFAULT_MAX_SECONDS
    reason: str = ""


def problems(low: int, high: int, prefix: str = "") -> list[tuple[str, str]]:
    """(field, rule) for each bound broken; empty when the pair is a valid filter."""
    out: list[tuple[str, str]] = []
    if not MIN_SECONDS_MIN <= low <= MIN_SECONDS_MAX:
        rule = f"must be between {MIN_SECONDS_MIN} and {MIN_SECONDS_MAX}"
        out.append((prefix + "minDurationSeconds", rule))
    if high > MAX_SECONDS_MAX:
        out.append((prefix + "maxDurationSeconds", f"must be ≤ {MAX_SECONDS_MAX}"))
    elif high < low:
        out.append((prefix + "maxDurationSeconds", f"must be ≥ minDurationSeconds ({low})"))
    return out


def in_force(own: AudioFilter, emergency: EmergencyFilter) -> AudioFilter:
    """The filter that judges an instance's notes: the emergency one while it is enabled."""
    if not emergency.enabled:
        return own
    return AudioFilter(
        minDurationSeconds=emergency.minDurationSeconds,
        maxDurationSeconds=emergency.maxDurationSeconds,
        enabled=True,
    )
