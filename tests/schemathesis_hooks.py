"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.schemathesis_hooks) for tests/test_openapi.py.

JSON Schema cannot compare two fields nor see stored state, so a positive case breaking a
cross-field rule the document states in words (max ≥ min; an enabled webhook needs a URL) is
skipped, judged by Fila's own validators. Integral floats (7.0) are sent as integers: JSON
Schema calls them integers, Fila's typed contract does not.
"""

from __future__ import annotations

from typing import Any

import msgspec
import schemathesis
from schemathesis import GenerationMode

from controlplane.errors import FieldError
from controlplane.validation import audio_bounds, daily_time, retention_days, timezone
from fila.models import RateLimitConfig
from fila.ratelimit import problems


def _ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    return _ints(body)


def _bounds_ok(value: Any) -> bool:
    if not isinstance(value, dict) or not {"minDurationSeconds", "maxDurationSeconds"} & set(value):
        return True
    lo, hi = value.get("minDurationSeconds", 3), value.get("maxDurationSeconds", 7200)
    try:
        audio_bounds(lo, hi, True)
    except FieldError:
        return False
    return True


def _webhook_ok(value: Any) -> bool:
    if not isinstance(value, dict):
        return True
    for name in ("principal", "monitoramento"):
        target = value.get(name)
        if isinstance(target, dict) and target.get("enabled") and not target.get("url"):
            return False  # valid only when a URL is already stored: state the schema cannot see
    return True


def _ratelimit_ok(value: Any) -> bool:
    if not isinstance(value, dict):
        return True
    try:
        config = msgspec.convert(value, RateLimitConfig)
    except msgspec.ValidationError:
        return True  # a type error: the schema's business, not a cross-field rule
    return not problems(config)


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    """Positive cases only: negative ones are meant to break rules."""
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return True
    body = case.body
    if not isinstance(body, dict):
        return True
    if not _bounds_ok(body) or not _webhook_ok(body):
        return False
    if case.path == "/config/import":
        filters = body.get("filters") or {}
        if isinstance(filters, dict) and not all(_bounds_ok(f) for f in filters.values()):
            return False
        if not _bounds_ok(body.get("emergency")) or not _webhook_ok(body.get("webhook")):
            return False
        cleanup = body.get("cleanup")
        if isinstance(cleanup, dict):  # Schedule, shared with answers, carries no bounds
            try:
                retention_days("retentionDays", cleanup.get("retentionDays"))
                daily_time("dailyTime", cleanup.get("dailyTime"))
                timezone("timezone", cleanup.get("timezone"))
            except FieldError:
                return False
        return _ratelimit_ok(body.get("ratelimit"))
    return True
