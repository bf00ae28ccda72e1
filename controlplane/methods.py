"""The `Allow` header of a path: what a 405 and an OPTIONS answer must list (RFC 9110).

Litestar's own OPTIONS answer lists only the handlers registered before it, and its 405 has
no `Allow` at all; both are answered from the app's complete route table here.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from litestar import Litestar, Response
from litestar.connection import Request

_PARAM = re.compile(r"\{[^}/]+\}")


@functools.cache
def _table(app: Litestar) -> tuple[tuple[re.Pattern[str], frozenset[str], int], ...]:
    """(path regex, methods, parameters) per route, built once per app (routes are fixed)."""
    out: list[tuple[re.Pattern[str], frozenset[str], int]] = []
    for route in app.routes:
        methods = getattr(route, "methods", None)
        if not methods:
            continue
        pieces = _PARAM.split(route.path_format)
        pattern = "[^/]+".join(re.escape(p) for p in pieces)
        out.append((re.compile(f"^{pattern}/?$"), frozenset(methods), len(pieces) - 1))
    return tuple(out)


def allowed(app: Litestar, path: str) -> list[str]:
    """Every method some route of `path` answers, sorted; empty for an unknown path."""
    methods: set[str] = set()
    fewest = None  # the router prefers the route with the fewest parameters (static first)
    for regex, route_methods, params in _table(app):
        if regex.match(path) and (fewest is None or params <= fewest):
            if fewest is not None and params < fewest:
                methods = set()
            fewest = params
            methods |= route_methods
    if methods:
        methods.add("OPTIONS")
    return sorted(methods)


def options_answer(request: Request[Any, Any, Any]) -> Response[None] | None:
    """`before_request`: OPTIONS answered 204 listing every method of the path, not some."""
    if request.method != "OPTIONS":
        return None
    methods = allowed(request.app, request.url.path)
    if not methods:
        return None
    return Response(None, status_code=204, headers={"allow": ", ".join(methods)})
