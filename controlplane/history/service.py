"""Recording and reading configuration changes (table `config_change`).

`record` runs inside the caller's `config_write` transaction, so the row commits or rolls back
with the change itself; a change refused by validation raises before it, leaving no row.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from controlplane.caller import CALLER
from controlplane.clock import iso, now
from controlplane.tables import ConfigChange as T
from fila.history import ConfigChange, instance_target

MASK = "***"
_SECRET_WORDS = ("secret", "token", "password", "apikey", "api_key", "authorization")
_SUPPRESSED: ContextVar[bool] = ContextVar("fila_history_suppressed", default=False)


@contextlib.contextmanager
def suppressed() -> Iterator[None]:
    """Inside a change recorded as a whole (config import), its parts add no rows of their own."""
    token = _SUPPRESSED.set(True)
    try:
        yield
    finally:
        _SUPPRESSED.reset(token)


def _mask_url(text: str) -> str:
    """A URL's password and query values are masked; the rest stays readable."""
    parts = urlsplit(text)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    query = parts.query
    if query:
        query = urlencode([(k, MASK) for k, _ in parse_qsl(query, keep_blank_values=True)])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def mask(value: Any, key: str = "") -> Any:
    """Header values, secret-looking fields and URL credentials replaced by `***`."""
    if isinstance(value, dict):
        if key.lower() == "headers":
            return {str(k): MASK for k in value}
        return {str(k): mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, key) for v in value]
    if isinstance(value, str):
        if any(word in key.lower() for word in _SECRET_WORDS):
            return MASK
        if "://" in value:
            with contextlib.suppress(ValueError):
                return _mask_url(value)
    return value


async def record(target: str, old: Any, new: Any, instances: Iterable[str] = ()) -> None:
    """One row in the current transaction; the caller holds the document's `config_write`."""
    if _SUPPRESSED.get():
        return
    caller = CALLER.get()
    await T.insert(
        T(
            at=now(),
            route=caller.route if caller else "",
            caller=caller.label if caller else "system",
            address=caller.address if caller else "",
            target=target,
            instances=list(instances),
            old=mask(msgspec.to_builtins(old)),
            new=mask(msgspec.to_builtins(new)),
        )
    ).run()


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def read(
    target: str | None, since: dt.datetime | None, limit: int, retention_days: int
) -> list[ConfigChange]:
    """Newest first; `instance:<name>` also finds bulk changes and imports that set it."""
    cutoff = now() - dt.timedelta(days=retention_days)
    if since is not None and since > cutoff:
        cutoff = since
    where = ["at >= {}"]
    args: list[Any] = [cutoff]
    if target:
        if target.startswith(instance_target("")):
            name = target.removeprefix(instance_target(""))
            where.append("(target = {} OR instances @> {}::jsonb)")
            args += [target, json.dumps([name])]
        else:
            where.append("target = {}")
            args.append(target)
    sql = (
        "SELECT id, at, route, caller, address, target, instances, old, new FROM config_change "
        f"WHERE {' AND '.join(where)} ORDER BY at DESC, id DESC LIMIT {{}}"
    )
    rows = await T.raw(sql, *args, limit).run()
    return [
        ConfigChange(
            id=r["id"],
            at=iso(r["at"]) or "",
            route=r["route"],
            caller=r["caller"],
            address=r["address"],
            target=r["target"],
            instances=list(_json(r["instances"]) or []),
            old=_json(r["old"]),
            new=_json(r["new"]),
        )
        for r in rows
    ]


async def prune(retention_days: int) -> int:
    """Delete rows older than the retention; how many went."""
    cutoff = now() - dt.timedelta(days=retention_days)
    gone = await T.delete().where(T.at < cutoff).returning(T._meta.primary_key).run()
    return len(gone)
