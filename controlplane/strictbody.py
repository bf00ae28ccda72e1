"""JSON bodies checked with the contract's exact types before Litestar's lenient conversion.

Litestar converts a body with `strict=False`, so `"enabled": "0"` would pass as false and
`"minDurationSeconds": "5"` as 5; the contract's fields are typed and a wrong type is a 400.
The `Meta` rules the types carry for the document are answered in the validators' words, and
a dict's bad value is named by its key (`weights.x`), not msgspec's `weights[...]`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request

from controlplane import validation
from controlplane.errors import FieldError, field_of
from fila.models import HEADER_NAME, HEADER_VALUE

WORDS: dict[str, Callable[[str, Any], object]] = {
    validation.URL: validation.url_shape,
    validation.URL_OR_EMPTY: validation.url_shape,
    validation.HHMM: validation.daily_time,
    HEADER_VALUE: validation.header_value,
    f"a name: {HEADER_NAME}": validation.header_map,
}
"""Patterns whose validator says what is wrong better than msgspec's `matching regex '…'`."""
_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


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
        raise _named(body, field.annotation, str(exc), name, rule) from None
    except (msgspec.DecodeError, TypeError):
        return  # not JSON, or a type msgspec cannot check: the normal path reports it


def _named(body: bytes, kind: Any, message: str, name: str, rule: str) -> FieldError:
    """The error with `[...]` replaced by the dict key at fault, in the validator's words."""
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:  # bad bytes after the value the typed decode stopped at
        return FieldError(name, rule)
    path: list[str | int | None] = []
    for match in _SEGMENT.finditer("." + name if name[:1] != "[" else name):
        key, index = match.groups()
        path.append(key if key is not None else None if index == "..." else int(index))
    for at, step in enumerate(path):
        if step is None:
            path[at] = _culprit(body, kind, message, path[:at])
            if path[at] is None:
                return FieldError(name, rule)
    named = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in path).lstrip(".")
    value = _at(doc, path)
    for pattern, check in WORDS.items():
        named_rule = pattern.startswith("a name: ")  # a key broke it: checked with its dict
        bare = pattern.removeprefix("a name: ")
        expected = f"Expected `str` matching regex {bare!r}"
        if rule == (f"a name: {expected}" if named_rule else expected):
            try:
                check(named, value)
            except FieldError as exc:
                return exc
    return FieldError(named or name, rule)


def _at(doc: Any, path: list[str | int | None]) -> Any:
    for step in path:
        try:
            doc = doc[step]
        except (KeyError, IndexError, TypeError):
            return None
    return doc


def _culprit(body: bytes, kind: Any, message: str, where: list[str | int | None]) -> str | None:
    """The key of the dict at `where` whose value alone fails as the whole body did."""
    container = _at(msgspec.json.decode(body), where)
    if not isinstance(container, dict):
        return None
    for key in container:
        trial = msgspec.json.decode(body)
        parent: Any = _at(trial, where[:-1]) if where else None
        alone = {key: container[key]}
        if where:
            parent[where[-1]] = alone
        else:
            trial = alone
        try:
            msgspec.json.decode(msgspec.json.encode(trial), type=kind, strict=True)
        except msgspec.ValidationError as exc:
            if str(exc) == message:
                return str(key)
    return None
