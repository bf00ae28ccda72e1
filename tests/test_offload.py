"""Large payloads are decoded off the event loop's thread; small ones inline."""

from __future__ import annotations

import asyncio
import threading

from fila.offload import OFF_LOOP_BYTES, off_loop


async def test_large_work_runs_in_a_thread_while_the_loop_goes_on() -> None:
    loop_thread = threading.get_ident()
    started = threading.Event()
    release = threading.Event()

    def work(data: bytes) -> tuple[int, int]:
        started.set()
        release.wait(10)
        return threading.get_ident(), len(data)

    big = asyncio.create_task(off_loop(OFF_LOOP_BYTES + 1, work, b"x" * 10))
    await asyncio.to_thread(started.wait, 10)
    # The work is held in its thread and this coroutine still runs: the loop is free.
    assert not big.done()
    release.set()
    where, size = await big
    assert where != loop_thread and size == 10
    inline = await off_loop(OFF_LOOP_BYTES, lambda: threading.get_ident())
    assert inline == loop_thread
