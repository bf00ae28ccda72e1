"""Retries for the hot path: one plain try first, stamina only once it has failed.

stamina's retry context (tenacity underneath) costs about as much CPU as the HTTP request it
wraps; a voice note's requests nearly always succeed at once, so they should not pay for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import stamina

_T = TypeVar("_T")


async def first_then_retried(
    op: Callable[[], Awaitable[_T]],
    *,
    on: type[Exception] | Callable[[Exception], bool],
    attempts: int,
    **backoff: Any,
) -> _T:
    """`op()`; if it raises what `on` retries, stamina's retries for the attempts left
    (`backoff`: stamina's wait_initial, wait_max, timeout)."""
    try:
        return await op()
    except Exception as exc:
        retried = isinstance(exc, on) if isinstance(on, type) else on(exc)
        if not retried or attempts <= 1:
            raise
    async for attempt in stamina.retry_context(on=on, attempts=attempts - 1, **backoff):
        with attempt:
            return await op()
    raise AssertionError("stamina ends with a result or an exception")  # pragma: no cover
