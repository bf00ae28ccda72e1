"""One error shape for every route: `{"statusCode", "message", ...}` naming field or dependency."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from controlplane.methods import allowed
from fila import logging as flog

log = flog.get("controlplane.errors")


class FieldError(Exception):
    """A request field breaks a rule: 400 naming the field and the rule."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class NotFound(Exception):
    """An unknown instance, session or resource: 404."""


class Busy(Exception):
    """No room for an ingest body within the wait: answered 429 with Retry-After."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"ingest buffer full: retry in {retry_after} s")
        self.retry_after = retry_after


class Conflict(Exception):
    """The operation cannot run now (for instance a cleanup already running): 409."""


class Throttled(Exception):
    """Too many failed credentials from one address: 429 with Retry-After."""

    def __init__(self, field: str, retry_after: int) -> None:
        super().__init__(
            f"{field}: too many wrong keys from this address; retry in {retry_after} s"
        )
        self.field = field
        self.retry_after = retry_after


class DependencyDown(Exception):
    """A backing service failed: 503 naming it."""

    def __init__(self, dependency: str, detail: str = "") -> None:
        super().__init__(f"{dependency} unavailable{': ' + detail if detail else ''}")
        self.dependency = dependency
        self.detail = detail


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every 4xx/5xx body, as the OpenAPI document's shared `Problem` component shows it."""

    statusCode: int
    message: str
    """`<field>: <rule>` for a 400; names the dependency for a 503."""
    field: str | None = None
    """The request field at fault (400, 413, 429 of a credential)."""
    dependency: str | None = None
    """The backing service that failed (503)."""
    retryAfter: int | None = None
    """Seconds to wait (429, also in the `Retry-After` header)."""


def _body(status: int, message: str, **extra: Any) -> Response[dict[str, Any]]:
    return Response(
        {"statusCode": status, "message": message, **extra},
        status_code=status,
        media_type=MediaType.JSON,
    )


def field_error(_: Request[Any, Any, Any], exc: FieldError) -> Response[dict[str, Any]]:
    return _body(400, str(exc), field=exc.field)


_MISSING = re.compile(r"missing required field `([^`]+)`")
_AT = re.compile(r"^(?P<rule>.*?)(?: - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`)?$", re.S)


def field_of(text: str, key: str = "") -> tuple[str, str]:
    """msgspec's `<rule> - at `$.a.b`` as (`a.b`, rule); a missing field is named itself."""
    match = _AT.match(text)
    path = (match.group("path") or "") if match else ""
    field = path.lstrip(".") or key or "body"
    missing = _MISSING.search(text)
    if missing:
        field = ".".join(x for x in (path.lstrip("."), missing.group(1)) if x)
    if field == "data":
        field = "body"
    rule = match.group("rule") if match else text
    if match and match.group("key"):
        rule = f"a name: {rule}"  # a dict's key broke the rule, not one of its values
    return field, rule


def validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """Decode errors (wrong JSON type, missing field) in the same `<field>: <rule>` form."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    for item in extra:
        if not isinstance(item, dict):
            continue
        field, rule = field_of(str(item.get("message", "")), str(item.get("key") or ""))
        return _body(400, f"{field}: {rule}", field=field)
    return _body(400, f"body: {exc.detail}", field="body")


def busy(_: Request[Any, Any, Any], exc: Busy) -> Response[dict[str, Any]]:
    response = _body(429, str(exc), retryAfter=exc.retry_after)
    response.headers["retry-after"] = str(exc.retry_after)
    return response


def throttled(_: Request[Any, Any, Any], exc: Throttled) -> Response[dict[str, Any]]:
    response = _body(429, str(exc), field=exc.field, retryAfter=exc.retry_after)
    response.headers["retry-after"] = str(exc.retry_after)
    return response


def not_found(_: Request[Any, Any, Any], exc: NotFound) -> Response[dict[str, Any]]:
    return _body(404, str(exc))


def conflict(_: Request[Any, Any, Any], exc: Conflict) -> Response[dict[str, Any]]:
    return _body(409, str(exc))


def dependency_down(_: Request[Any, Any, Any], exc: DependencyDown) -> Response[dict[str, Any]]:
    log.warning("dependency down", dependency=exc.dependency, detail=exc.detail)
    return _body(503, str(exc), dependency=exc.dependency)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    if exc.status_code == 400:  # a body that does not even decode
        return _body(400, f"body: {exc.detail}", field="body")
    if exc.status_code == 413:
        limit = request.route_handler.resolve_request_max_body_size()
        rule = f"larger than the {limit}-byte limit (FILA_MAX_AUDIO_BYTES as base64 + 1 MiB)"
        return _body(413, f"body: {rule}", field="body")
    response = _body(exc.status_code, str(exc.detail))
    if exc.status_code == 405:  # RFC 9110: a 405 lists what the path does answer
        response.headers["allow"] = ", ".join(allowed(request.app, request.url.path))
    return response


def _dependency_of(exc: Exception) -> str | None:
    module = type(exc).__module__
    for prefix, name in (
        ("redis", "redis"),
        ("asyncpg", "postgresql"),
        ("piccolo", "postgresql"),
        ("aio_pika", "rabbitmq"),
        ("aiormq", "rabbitmq"),
        ("pamqp", "rabbitmq"),
        ("botocore", "s3"),
        ("aiobotocore", "s3"),
    ):
        if module.startswith(prefix):
            return name
    return None


def unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """A client library failing means its service is down (503); anything else is a 500."""
    dependency = _dependency_of(exc)
    if dependency is None and isinstance(exc, ConnectionError | OSError):
        dependency = "network"
    if dependency:
        log.warning("dependency failed", dependency=dependency, error=str(exc))
        return _body(503, f"{dependency} unavailable: {exc}", dependency=dependency)
    log.exception("unhandled error")
    return _body(500, f"internal error: {type(exc).__name__}")


HANDLERS: dict[type[Exception] | int, Any] = {
    FieldError: field_error,
    ValidationException: validation_error,
    NotFound: not_found,
    Busy: busy,
    Throttled: throttled,
    Conflict: conflict,
    DependencyDown: dependency_down,
    HTTPException: http_error,
    Exception: unexpected,
}
