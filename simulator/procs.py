"""Child `fila` processes for the demo and the bench: started with logs to files, stopped
with SIGTERM (so each finishes or requeues what it holds), SIGKILL only for stragglers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from fila.dev import lifetime
from fila.settings import Settings


class Child:
    def __init__(self, name: str, process: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ProcessGroup:
    """Every child it started, stopped in reverse order of start."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.children: list[Child] = []
        self.killed: list[str] = []
        """Children that ignored SIGTERM for the whole grace period."""

    async def start(
        self,
        name: str,
        args: list[str],
        *,
        foreground: bool = False,
        env: dict[str, str] | None = None,
    ) -> Child:
        """`python -m fila <args>`; a foreground child keeps the terminal (the TUI)."""
        await asyncio.to_thread(self.log_dir.mkdir, parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        environ = {**os.environ, **self.settings.to_env(), **(env or {})}
        if foreground:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "fila",
                *args,
                env=environ,
                preexec_fn=lifetime.die_with_parent(),
            )
        else:
            handle = await asyncio.to_thread(log.open, "wb")
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "fila",
                    *args,
                    env=environ,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=handle,
                    stderr=asyncio.subprocess.STDOUT,
                    # Ctrl-C reaches only the demo, which stops its children in order;
                    # a demo killed hard still takes them down.
                    start_new_session=True,
                    preexec_fn=lifetime.die_with_parent(),
                )
            finally:
                handle.close()
        child = Child(name, process, log)
        self.children.append(child)
        return child

    async def run(self, name: str, args: list[str], timeout: float = 300) -> Child:
        """Start a one-shot command and wait for it; raise with its log tail when it fails."""
        child = await self.start(name, args)
        try:
            await asyncio.wait_for(child.process.wait(), timeout)
        except TimeoutError:
            await self._stop(child, 5)
            raise RuntimeError(
                f"`fila {' '.join(args)}` did not finish in {timeout:.0f} s"
            ) from None
        if child.process.returncode != 0:
            raise RuntimeError(
                f"`fila {' '.join(args)}` failed ({child.process.returncode}):\n{child.tail()}"
            )
        return child

    def dead(self) -> list[Child]:
        """Long-running children that exited on their own."""
        return [c for c in self.children if not c.alive and c.process.returncode not in (0, None)]

    async def stop_all(self, grace: float = 20.0) -> dict[str, int | None]:
        results: dict[str, int | None] = {}
        for child in reversed(self.children):
            if child.alive:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            results[child.name] = await self._stop(child, grace, signalled=True)
        return results

    async def stop(self, child: Child, grace: float = 20.0) -> int | None:
        """SIGTERM one child, SIGKILL it if it outlives `grace`."""
        return await self._stop(child, grace)

    async def _stop(self, child: Child, grace: float, signalled: bool = False) -> int | None:
        # One SIGTERM only: a second one could land after the child's loop has let go of its
        # handler and kill it mid-shutdown.
        if child.alive and not signalled:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(child.process.wait(), grace)
        except TimeoutError:
            self.killed.append(child.name)
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()
            return await child.process.wait()
