"""Who may post Evolution API events: an ingest token (path or header) or the admin key.

Evolution API's global webhook cannot send headers, so the token can ride in the URL path; it is
masked in every log line (`fila.logging`) and never echoed in an answer.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from controlplane import throttle
from controlplane.auth import client_address
from controlplane.errors import Throttled
from fila.settings import Settings

TOKEN_HEADER = "x-fila-ingest-token"
"""The header form, for senders that can set headers (Evolution's per-instance webhook)."""

INGEST_OPT: dict[str, Any] = {"public": True, "ingest": True}
"""`opt` of the ingest routes: the admin-key guard steps aside, `require_ingest` decides."""


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def token_ok(given: str, tokens: list[str]) -> bool:
    """Compared with every token, equal-length digests, no early exit: timing tells nothing."""
    probe = _digest(given)
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(probe, _digest(token))
    return matched


def credential_problem(
    settings: Settings, path_token: str | None, header_token: str | None, apikey: str | None
) -> str | None:
    """Why a request may not post events, or None: a right token (path or header) or the
    admin key passes; the message names what was wrong, never its value."""
    tokens = settings.ingest_token_list
    if path_token is not None and token_ok(path_token, tokens):
        return None
    if header_token and token_ok(header_token, tokens):
        return None
    if apikey and hmac.compare_digest(_digest(apikey), _digest(settings.api_key)):
        return None
    if apikey:
        return "apikey: wrong key"
    if path_token is not None:
        return "token: wrong or revoked ingest token (and no apikey header)"
    if header_token:
        return f"{TOKEN_HEADER}: wrong or revoked ingest token (and no apikey header)"
    return f"apikey: header is required (or {TOKEN_HEADER}, or the /t/<token> URL)"


async def require_ingest(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """401 naming what was wrong, never the value given; past FILA_AUTH_FAIL_LIMIT failures
    from one address in the window, 429 with Retry-After (controlplane.throttle)."""
    settings: Settings = connection.app.state.settings
    path_token = connection.path_params.get("token")
    problem = credential_problem(
        settings,
        str(path_token) if path_token is not None else None,
        connection.headers.get(TOKEN_HEADER),
        connection.headers.get("apikey"),
    )
    if problem is None:
        return
    rt = getattr(connection.app.state, "rt", None)
    if rt is not None:  # guessing tokens is throttled like guessing the key (own count)
        wait = await throttle.failure(
            rt.redis,
            settings.redis_prefix,
            "ingest",
            client_address(connection),
            settings.auth_fail_limit,
            settings.auth_fail_window_seconds,
        )
        if wait:
            raise Throttled("token", wait)
    raise NotAuthorizedException(problem)
