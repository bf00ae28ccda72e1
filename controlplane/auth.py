"""The `apikey` header guard: every route but the health probes needs it."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

PUBLIC = {"public": True}
"""`opt` of a handler that needs no key (health probes)."""


def require_apikey(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Constant-time comparison, so the key cannot be guessed byte by byte from timings.

    An empty header never passes, even against a key that is empty by mistake."""
    if handler.opt.get("public"):
        return
    expected: str = connection.app.state.settings.api_key
    given = connection.headers.get("apikey")
    if not given:
        raise NotAuthorizedException("apikey: header is required")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise NotAuthorizedException("apikey: wrong key")
