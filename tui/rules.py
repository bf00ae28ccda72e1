"""The contract's validation rules, checked in the TUI before anything is sent.

Each function returns the problems found as messages that name the field, empty when valid.
"""

from __future__ import annotations

from fila import audiofilter
from fila.models import RateLimitConfig
from fila.ratelimit import WEIGHT_MAX, WEIGHT_MIN, problems

THRESHOLD_RULES = f"rule: {audiofilter.RULE}"
RATELIMIT_RULES = (
    "rule: capacity ≥ 1, refill > 0, reserve 0-90 %, burst ≥ 1, window ≥ 1 s; an instance is"
    " refused only once the bucket is down to the reserve and it is past its share"
)
WEIGHT_RULES = "rule: 1-10; share under contention and queue priority grow with it"


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
    """The audio filter rule of `fila.audiofilter`, after both fields parse."""
    low, low_error = whole(min_text, "minDurationSeconds")
    high, high_error = whole(max_text, "maxDurationSeconds")
    errors = [e for e in (low_error, high_error) if e]
    if low is None or high is None:
        return errors
    return [f"{field} {rule}" for field, rule in audiofilter.problems(low, high)]


def ratelimit_errors(
    capacity: str, refill: str, policy: str, reserve: str, burst: str, window: str
) -> list[str]:
    """The limiter's own rules (`fila.ratelimit.problems`), after each field parses."""
    cap, cap_error = whole(capacity, "capacity")
    rate, rate_error = number(refill, "refillPerMinute")
    pct, pct_error = whole(reserve, "reservePercent")
    icap, icap_error = whole(burst, "instanceCapacity")
    span, span_error = whole(window, "activeWindowSeconds")
    errors = [e for e in (cap_error, rate_error, pct_error, icap_error, span_error) if e]
    if policy not in ("reject", "defer"):
        errors.append("policy must be reject or defer")
    if errors or cap is None or rate is None or pct is None or icap is None or span is None:
        return errors
    config = RateLimitConfig(
        capacity=cap,
        refillPerMinute=rate,
        reservePercent=pct,
        instanceCapacity=icap,
        activeWindowSeconds=span,
    )
    return [f"{field} {rule}" for field, rule in problems(config)]


def weight_errors(text: str) -> list[str]:
    """A weight is a whole number from 1 to 10."""
    weight, error = whole(text, "weight")
    if error:
        return [error]
    if weight is not None and not WEIGHT_MIN <= weight <= WEIGHT_MAX:
        return [f"weight must be {WEIGHT_MIN} to {WEIGHT_MAX}"]
    return []
