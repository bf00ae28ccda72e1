"""The `apikey` header guard: every route but the health probes needs it.

Two keys by role: the admin key may call everything, the read-only key (if set) every GET and
nothing else (403). Wrong or missing keys are counted per client address (controlplane.throttle):
past `FILA_AUTH_FAIL_LIMIT` in `FILA_AUTH_FAIL_WINDOW_SECONDS` they get 429 instead of 401.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from controlplane import throttle
from controlplane.caller import CALLER, Caller, Role, fingerprint
from controlplane.errors import Throttled
from fila.settings import Settings

PUBLIC = {"public": True}
"""`opt` of a handler that needs no key (health probes)."""

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""What the read-only key may call: the methods that change nothing (RFC 9110 safe methods)."""


def _role(given: str, settings: Settings) -> Role | None:
    """Constant-time comparison against each key, so none can be guessed byte by byte."""
    admin = hmac.compare_digest(given.encode(), settings.api_key.encode())
    readonly = bool(settings.api_key_readonly) and hmac.compare_digest(
        given.encode(), settings.api_key_readonly.encode()
    )
    if admin:
        return "admin"
    return "readonly" if readonly else None


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The peer's address as the server sees it (a proxy in front: the proxy's)."""
    return connection.client.host if connection.client else "unknown"


async def _refuse(connection: ASGIConnection[Any, Any, Any, Any], message: str) -> None:
    settings: Settings = connection.app.state.settings
    rt = getattr(connection.app.state, "rt", None)
    if rt is not None:
        wait = await throttle.failure(
            rt.redis,
            settings.redis_prefix,
            "apikey",
            client_address(connection),
            settings.auth_fail_limit,
            settings.auth_fail_window_seconds,
        )
        if wait:
            raise Throttled("apikey", wait)
    raise NotAuthorizedException(message)


async def require_apikey(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """An empty header never passes, even against a key that is empty by mistake."""
    settings: Settings = connection.app.state.settings
    given = connection.headers.get("apikey")
    method = connection.scope.get("method", "GET")
    if handler.opt.get("public"):
        # Routes with their own credential (probes, ingest tokens) still refuse the read-only
        # key anything but a GET: it changes nothing, wherever it is shown.
        if given and method not in READ_METHODS and _role(given, settings) == "readonly":
            raise PermissionDeniedException(f"apikey: the read-only key may not {method}")
        return
    if not given:
        await _refuse(connection, "apikey: header is required")
        return
    role = _role(given, settings)
    if role is None:
        await _refuse(connection, "apikey: wrong key")
        return
    if role == "readonly" and method not in READ_METHODS:
        raise PermissionDeniedException(f"apikey: the read-only key may not {method}")
    route = f"{method} {connection.scope.get('path_template') or connection.url.path}"
    CALLER.set(Caller(role, fingerprint(given), route, client_address(connection)))
