"""The contract's validation rules, checked in the TUI before anything is sent.

Each function returns the problems found as messages that name the field, empty when valid.
"""

from __future__ import annotations

THRESHOLD_RULES = "rule: 1 ≤ min ≤ 300 and min ≤ max ≤ 7200 (seconds)"
RATELIMIT_RULES = "rule: capacity ≥ 1, refill per minute > 0, policy reject or defer"


def whole(text: str, field: str) -> tuple[int | None, str | None]:
    try:
        return int(text.strip()), None
    except ValueError:
        return None, f"{field} must be a whole number (got {text.strip()!r})"


def number(text: str, field: str) -> tuple[float | None, str | None]:
    try:
        return float(text.strip()), None
    except ValueError:
        return None, f"{field} must be a number (got {text.strip()!r})"


def threshold_errors(min_text: str, max_text: str) -> list[str]:
    """The audio filter rules: 1 ≤ min ≤ 300; min ≤ max ≤ 7200."""
    low, low_error = whole(min_text, "minDurationSeconds")
    high, high_error = whole(max_text, "maxDurationSeconds")
    errors = [e for e in (low_error, high_error) if e]
    if low is not None and not 1 <= low <= 300:
        errors.append("minDurationSeconds must be between 1 and 300")
    if high is not None and high > 7200:
        errors.append("maxDurationSeconds must be at most 7200")
    if low is not None and high is not None and high < low:
        errors.append(f"maxDurationSeconds must be ≥ minDurationSeconds ({low})")
    return errors


def ratelimit_errors(capacity: str, refill: str, policy: str) -> list[str]:
    """Global bucket: capacity ≥ 1, refillPerMinute > 0, policy reject|defer."""
    cap, cap_error = whole(capacity, "capacity")
    rate, rate_error = number(refill, "refillPerMinute")
    errors = [e for e in (cap_error, rate_error) if e]
    if cap is not None and cap < 1:
        errors.append("capacity must be ≥ 1")
    if rate is not None and rate <= 0:
        errors.append("refillPerMinute must be > 0")
    if policy not in ("reject", "defer"):
        errors.append("policy must be reject or defer")
    return errors
