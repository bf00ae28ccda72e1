"""The hot path's retries: a plain first try, stamina's backoff only after it failed."""

from __future__ import annotations

import pytest

from fila.retries import first_then_retried


class Flaky(Exception):
    pass


def _op(failures: list[Exception], calls: list[int]):  # type: ignore[no-untyped-def]
    async def op() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "done"

    return op


FAST = {"wait_initial": 0.001, "wait_max": 0.001, "timeout": 5.0}


async def test_a_first_success_is_one_call() -> None:
    calls: list[int] = []
    assert await first_then_retried(_op([], calls), on=Flaky, attempts=3, **FAST) == "done"
    assert len(calls) == 1


async def test_failures_it_retries_are_tried_again_up_to_the_attempts() -> None:
    calls: list[int] = []
    op = _op([Flaky(), Flaky()], calls)
    assert await first_then_retried(op, on=Flaky, attempts=3, **FAST) == "done"
    assert len(calls) == 3

    calls.clear()
    with pytest.raises(Flaky):
        await first_then_retried(_op([Flaky()] * 5, calls), on=Flaky, attempts=3, **FAST)
    assert len(calls) == 3


async def test_what_it_does_not_retry_is_raised_at_once() -> None:
    calls: list[int] = []
    with pytest.raises(ValueError):
        await first_then_retried(_op([ValueError()], calls), on=Flaky, attempts=3, **FAST)
    assert len(calls) == 1
    # A predicate decides too, on the first try and on the later ones.
    calls.clear()
    op = _op([Flaky("again"), Flaky("stop")], calls)
    with pytest.raises(Flaky, match="stop"):
        await first_then_retried(op, on=lambda e: str(e) == "again", attempts=5, **FAST)
    assert len(calls) == 2
