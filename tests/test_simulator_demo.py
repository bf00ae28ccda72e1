"""`fila demo --headless`: the main job end to end, as a user runs it, in isolated namespaces."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from redis.asyncio import Redis

from fila.keys import Keys
from fila.settings import Settings
from tests.support import Proc, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _row(output: str, name: str) -> int:
    match = re.search(rf"{re.escape(name)}\s*│\s*(\d+)", output)
    assert match, f"no '{name}' row in:\n{output[-3000:]}"
    return int(match.group(1))


def _on_free_ports(settings: Settings) -> Settings:
    """`settings` with the demo's control plane and Evolution stand-in on ports of their own."""
    port = free_port()
    return settings.replace(
        http_port=port,
        server_url=f"http://127.0.0.1:{port}",
        evolution_url=f"http://127.0.0.1:{free_port()}",
    )


async def test_headless_demo_delivers_the_simulated_voice_notes(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    demo_settings = _on_free_ports(settings)
    proc = spawn(
        [
            "demo",
            "--headless",
            "--duration",
            "20",
            "--instances",
            "500",
            "--rate",
            "500",
            "--receiver-port",
            "0",
        ],
        demo_settings,
        COLUMNS="200",
    )
    await wait_for(lambda: proc.popen.poll() is not None, timeout=240, interval=0.5)
    output = proc.output()
    assert proc.popen.returncode == 0, output[-4000:]
    to_deliver = _row(output, "voice notes to deliver")
    assert to_deliver > 50  # ~500/min for 20 s, mostly voice notes
    assert _row(output, "delivered (main webhook)") == to_deliver, output[-5000:]
    assert _row(output, "signatures verified") >= to_deliver
    assert _row(output, "duplicate deliveries") == 0
    assert _row(output, "sent too_short") == _row(output, "counter tooShort")
    assert _row(output, "sent too_long") == _row(output, "counter tooLong")
    # Every child stopped on SIGTERM within the grace period, none needed SIGKILL (uvicorn
    # re-raises SIGTERM once shut down, so the control plane may report -15).
    exits = re.search(r"exit codes\s*│\s*(.+?)\s*│", output)
    assert exits, output[-3000:]
    codes = dict(part.split("=") for part in exits.group(1).split(", "))
    assert set(codes) == {"controlplane", "ingest-1", "ingest-2", "delivery-1", "delivery-2"}
    workers = {k: v for k, v in codes.items() if k != "controlplane"}
    assert set(workers.values()) == {"0"}, codes
    assert codes["controlplane"] in ("0", "-15"), codes
    assert re.search(r"needed SIGKILL\s*│\s*none", output)


def _drive_tui_demo(args: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run `fila demo` on a pseudo-terminal, press q once the TUI has drawn and traffic flows."""
    pid, fd = pty.fork()
    if pid == 0:  # child: become the demo
        os.execve(sys.executable, [sys.executable, "-m", "fila", *args], env)
    output = b""
    started = time.monotonic()
    tui_seen_at: float | None = None
    pressed = False
    try:
        while time.monotonic() - started < timeout:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
            if tui_seen_at is None and b"\x1b[?1049h" in output:  # the TUI took the screen
                tui_seen_at = time.monotonic()
            if tui_seen_at and not pressed and time.monotonic() - tui_seen_at > 10:
                os.write(fd, b"q")
                pressed = True
        else:
            os.kill(pid, signal.SIGTERM)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


async def test_demo_runs_the_tui_in_the_foreground_and_tears_down_when_it_quits(
    settings: Settings,
) -> None:
    demo_settings = _on_free_ports(settings)
    env = {
        **os.environ,
        **demo_settings.to_env(),
        "COLUMNS": "160",
        "LINES": "48",
        "TERM": "xterm-256color",
    }
    code, output = await asyncio.to_thread(
        _drive_tui_demo, ["demo", "--receiver-port", "0", "--duration", "600"], env, 180
    )
    plain = re.sub(r"\x1b\[[0-9;?<>=]*[A-Za-z]", "", output)
    assert code == 0, plain[-4000:]
    assert "Fila demo: what happened" in plain
    exits = re.search(r"exit codes\s*│\s*(.+?)\s*│", plain)
    assert exits, plain[-3000:]
    codes = dict(part.split("=") for part in exits.group(1).split(", "))
    assert codes.get("tui") == "0" and set(codes) >= {"controlplane", "ingest-1", "delivery-1"}
    assert set(codes.values()) <= {"0", "-15"}, codes
    assert re.search(r"needed SIGKILL\s*│\s*none", plain)
    assert _row(plain, "delivered (main webhook)") > 0, plain[-5000:]


def _processes_with(marker: bytes) -> list[int]:
    """Pids whose environment carries `marker` (this test's own Redis prefix)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def test_sigterm_tears_the_demo_down_and_leaves_no_process(
    settings: Settings, spawn: Callable[..., Proc], redis: Redis, keys: Keys
) -> None:
    demo_settings = _on_free_ports(settings)
    proc = spawn(
        ["demo", "--headless", "--duration", "600", "--receiver-port", "0"],
        demo_settings,
        COLUMNS="160",
    )
    marker = f"FILA_REDIS_PREFIX={settings.redis_prefix}".encode()
    await wait_for(lambda: "simulator:" in proc.output(), timeout=120, interval=0.3)
    await wait_for(lambda: redis.zcard(keys.workers), timeout=60)
    assert len(_processes_with(marker)) >= 6  # demo, control plane, 2 ingest, 2 delivery
    proc.popen.send_signal(signal.SIGTERM)
    await wait_for(lambda: proc.popen.poll() is not None, timeout=90, interval=0.3)
    assert proc.popen.returncode == 0, proc.output()[-3000:]
    assert "stopping workers and the control plane" in proc.output()
    assert _processes_with(marker) == []
    assert await redis.zcard(keys.workers) == 0  # every worker left the fleet on its way out
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", demo_settings.http_port)) != 0  # the control plane: gone
