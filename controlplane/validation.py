"""Rules shared by several routes; each failure names the field and the rule broken."""

from __future__ import annotations

import asyncio
import re
import zoneinfo
from typing import Any
from urllib.parse import urlsplit

from controlplane.errors import FieldError
from fila import audiofilter
from fila.addresses import is_private
from fila.models import HEADER_NAME, HEADER_VALUE

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"
"""dailyTime, as the validator and the OpenAPI document read it."""
_HHMM = re.compile(HHMM)
TIMEZONES = sorted(zoneinfo.available_timezones())
"""The IANA names this host knows: the only timezones accepted (and the document's enum)."""
URL = (
    r"^https?://[A-Za-z0-9._~-]*[A-Za-z0-9][A-Za-z0-9._~-]*"
    r"(:(6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3}))?"
    r"([/?#][^\s\x00-\x1f\x7f]*)?$"
)
"""An http(s) URL with a host and a valid port, no spaces or control characters."""
_URL = re.compile(URL)
URL_OR_EMPTY = f"^$|{URL}"
"""A stored target's URL, which may be cleared with ""."""
_HEADER_NAME = re.compile(HEADER_NAME)
_HEADER_VALUE = re.compile(HEADER_VALUE)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def require_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(field, "must be an integer")
    return value


def require_bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldError(field, "must be a boolean")
    return value


def audio_bounds(min_s: Any, max_s: Any, enabled: Any, prefix: str = "") -> tuple[int, int, bool]:
    """The filter rule of `fila.audiofilter`, and `enabled` a boolean."""
    lo = require_int(prefix + "minDurationSeconds", min_s)
    hi = require_int(prefix + "maxDurationSeconds", max_s)
    on = require_bool(prefix + "enabled", enabled)
    for field, rule in audiofilter.problems(lo, hi, prefix):
        raise FieldError(field, rule)
    return lo, hi, on


def daily_time(field: str, value: Any) -> str:
    if not isinstance(value, str) or not _HHMM.fullmatch(value):
        raise FieldError(field, "must be HH:MM (00:00 to 23:59)")
    return value


def timezone(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise FieldError(field, "must be an IANA timezone name")
    if value not in TIMEZONES:
        raise FieldError(field, f"unknown IANA timezone {value!r}")
    return value


RETENTION_DAYS_MAX = 36_500
"""A century: larger values mean nothing and would overflow the stored integer."""


def retention_days(field: str, value: Any) -> int:
    days = require_int(field, value)
    if not 1 <= days <= RETENTION_DAYS_MAX:
        raise FieldError(field, f"must be 1 to {RETENTION_DAYS_MAX}")
    return days


def url_shape(field: str, value: Any) -> str:
    """`URL`'s rule in words: which part of an http(s) URL is wrong."""
    if not isinstance(value, str):
        raise FieldError(field, "must be a string URL")
    if any(ch.isspace() or _CONTROL.match(ch) for ch in value):
        raise FieldError(field, "must not contain spaces or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FieldError(field, "must be an http or https URL with a host")
    try:
        _ = parts.port
    except ValueError:
        raise FieldError(field, "has a bad port") from None
    if not _URL.fullmatch(value):
        raise FieldError(field, "must be an http or https URL with a host and a valid port")
    return value


async def webhook_url(field: str, value: Any, block_private: bool) -> str:
    """http/https with a host; with `block_private`, no private, loopback or link-local target."""
    url = url_shape(field, value)
    parts = urlsplit(url)
    if block_private:
        host = parts.hostname
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 80)
        except OSError:
            raise FieldError(field, f"host {host!r} does not resolve") from None
        if any(is_private(str(info[4][0])) for info in infos):
            raise FieldError(field, "must not point at a private or loopback address")
    return url


def header_value(field: str, value: Any) -> str:
    """What httpx and h11 send: visible ASCII with spaces or tabs between words."""
    if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
        raise FieldError(field, "must be visible ASCII (spaces and tabs only between words)")
    return value


def header_map(field: str, headers: dict[str, str]) -> dict[str, str]:
    """Extra HTTP headers sent with each POST: RFC 9110 names, values httpx can send."""
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise FieldError(field, f"{name!r} is not a valid HTTP header name")
        header_value(f"{field}.{name}", value)
    return headers
