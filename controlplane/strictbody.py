"""JSON bodies checked with the contract's exact types before Litestar's lenient conversion.

Litestar converts a body with `strict=False`, so `"enabled": "0"` would pass as false and
`"minDurationSeconds": "5"` as 5; the contract's fields are typed and a wrong type is a 400.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request

from controlplane.errors import FieldError, field_of


async def strict_body(request: Request[Any, Any, Any]) -> None:
    """Refuse a JSON body whose values do not have the route's declared types (400 naming one)."""
    field = request.route_handler.parsed_data_field
    if field is None or request.method in ("GET", "HEAD", "DELETE"):
        return
    body = await request.body()
    if not body.strip():
        return  # an absent optional body is Litestar's to judge
    try:
        msgspec.json.decode(body, type=field.annotation, strict=True)
    except msgspec.ValidationError as exc:
        name, rule = field_of(str(exc))
        raise FieldError(name, rule) from None
    except (msgspec.DecodeError, TypeError):
        return  # not JSON, or a type msgspec cannot check: the normal path reports it
