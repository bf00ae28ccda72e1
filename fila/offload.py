"""CPU work on large payloads kept off the event loop, so other events keep flowing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

OFF_LOOP_BYTES = 256 * 1024
"""Above this size, decoding, parsing and decrypting run in a thread (a voice note of a few
minutes); below it a thread hop costs more than the work."""

_P = ParamSpec("_P")
_R = TypeVar("_R")


async def off_loop(size: int, fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """`fn(...)` inline for small inputs, in a worker thread for large ones."""
    if size <= OFF_LOOP_BYTES:
        return fn(*args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)
