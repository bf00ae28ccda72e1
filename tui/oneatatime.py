"""A key that sends a change is not sent twice while its first request is out.

An exclusive worker would cancel the first request on the client, but the control plane may
still carry it out: the second press would then replay, run or save a second time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class _Notifies(Protocol):
    def notify(self, message: str, *, severity: Any = ...) -> None: ...


S = TypeVar("S", bound=_Notifies)


def one_at_a_time(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R | None]]:
    """Ignore (and say so) a call made while the same action of the same screen is running."""

    @functools.wraps(method)
    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R | None:
        running: set[str] = self.__dict__.setdefault("_running_actions", set())
        if method.__name__ in running:
            self.notify("still waiting for the previous request", severity="warning")
            return None
        running.add(method.__name__)
        try:
            return await method(self, *args, **kwargs)
        finally:
            running.discard(method.__name__)

    return wrapper
