"""One page of the fleet table: sort, filter and slice, the same for the server and the TUI.

The control plane answers `GET /fleet/instances?sort=&order=&q=&offset=&limit=` with this, so a
TUI showing 40 rows of 5,000 moves only those 40; the TUI's offline mode (demo, snapshots)
applies the same rule to the rows it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec

from fila.views import InstanceRow, InstancesView

Order = Literal["asc", "desc"]

SORTS: dict[str, Callable[[InstanceRow], Any]] = {
    "instance": lambda r: r.instance,
    "received": lambda r: r.received,
    "processed": lambda r: r.processed,
    "tooShort": lambda r: r.tooShort,
    "tooLong": lambda r: r.tooLong,
    "rateLimited": lambda r: r.rateLimited,
    "deferred": lambda r: r.deferred,
    "ingestFailed": lambda r: r.ingestFailed,
    "delivered": lambda r: r.delivered,
    "deliveryFailed": lambda r: r.deliveryFailed,
    "tokens": lambda r: r.tokens,
    "weight": lambda r: r.weight,
    "minDurationSeconds": lambda r: r.minDurationSeconds,
    "maxDurationSeconds": lambda r: r.maxDurationSeconds,
    "enabled": lambda r: r.enabled,
    "lastSeen": lambda r: -(r.lastSeen or 0.0),
}
"""Sortable fields; lastSeen ascending means the most recently seen first."""

MAX_LIMIT = 1000
"""Largest page; without `limit` the whole fleet is answered (scripts, exports)."""


class InstancesQuery(msgspec.Struct, kw_only=True, frozen=True):
    sort: str = "instance"
    order: Order = "asc"
    q: str = ""
    """Case-insensitive substring of the instance name."""
    offset: int = 0
    limit: int | None = None


def problems(query: InstancesQuery) -> list[tuple[str, str]]:
    """(parameter, rule) for each value that cannot be served."""
    out: list[tuple[str, str]] = []
    if query.sort not in SORTS:
        out.append(("sort", f"must be one of {', '.join(SORTS)}"))
    if query.offset < 0:
        out.append(("offset", "must be ≥ 0"))
    if query.limit is not None and not 1 <= query.limit <= MAX_LIMIT:
        out.append(("limit", f"must be 1 to {MAX_LIMIT}"))
    return out


def matching(
    rows: list[InstanceRow],
    query: InstancesQuery,
    order: Callable[[InstanceRow], Any] | None = None,
) -> list[InstanceRow]:
    """Filtered and sorted (ties by name, so pages never overlap); `order` stands in for the
    sort's own key when the values live beside the rows (share levels read apart)."""
    needle = query.q.strip().lower()
    kept = [r for r in rows if needle in r.instance.lower()] if needle else list(rows)
    key = order or SORTS[query.sort]
    kept.sort(key=lambda r: r.instance)
    kept.sort(key=key, reverse=query.order == "desc")
    return kept


def page(
    rows: list[InstanceRow],
    query: InstancesQuery,
    order: Callable[[InstanceRow], Any] | None = None,
) -> tuple[list[InstanceRow], int]:
    """(the requested slice, how many matched the filter)."""
    kept = matching(rows, query, order)
    end = None if query.limit is None else query.offset + query.limit
    return kept[query.offset : end], len(kept)


def answer(
    shown: list[InstanceRow], matched: int, total: int, generated: float, query: InstancesQuery
) -> InstancesView:
    """`GET /fleet/instances` for `query`: the page `shown`, of `total` live rows of which
    `matched` passed its filter."""
    return InstancesView(
        instances=shown,
        generatedAt=generated,
        total=total,
        matched=matched,
        offset=query.offset,
        limit=query.limit,
        q=query.q,
        sort=query.sort,
        order=query.order,
    )
