"""Helpers for tests: subprocess handles and polling."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import httpx


class Proc:
    """A `fila` subprocess started by a test, stopped (SIGTERM, then SIGKILL) at teardown."""

    def __init__(self, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.popen = popen
        self.log = log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 20) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


async def wait_for(
    predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05
) -> None:
    """Poll `predicate` (sync or async) until truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def wait_answering(
    client: httpx.AsyncClient,
    url: str = "/healthz",
    popen: subprocess.Popen[bytes] | None = None,
    output: Callable[[], str] = str,
    timeout: float = 60.0,
    interval: float = 0.2,
) -> None:
    """Poll `url` through `client` until it answers 200; fail with `output()` (the server's
    log) as soon as `popen`, the server's process, has exited."""

    async def up() -> bool:
        if popen is not None:
            assert popen.poll() is None, output()
        try:
            return (await client.get(url)).status_code == 200
        except httpx.TransportError:
            return False

    await wait_for(up, timeout=timeout, interval=interval)


class LocalSetup(Protocol):
    """A local cluster or Sentinel setup of `fila.dev` (ports of its own, data under data_dir)."""

    def up(self, report: Callable[[str], None] = ..., timeout: float = ...) -> None: ...
    def down(self, wipe: bool = False) -> list[int]: ...


S = TypeVar("S", bound=LocalSetup)


@contextlib.contextmanager
def brought_up(setup: S) -> Iterator[S]:
    """`setup` started for a test session (what a run that died left of it wiped first), then
    stopped and wiped."""
    setup.down(wipe=True)
    try:
        setup.up(report=lambda m: print(m, file=sys.stderr))
        yield setup
    finally:
        setup.down(wipe=True)
