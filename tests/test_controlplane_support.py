"""Fixtures of the control-plane tests: migrated database, in-process app, free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from controlplane.app import create_app
from fila.settings import Settings
from tests.support import Proc, wait_answering

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_migrations(settings: Settings) -> None:
    """`fila migrate` as operators run it, against `settings.database_url`."""
    done = subprocess.run(
        [sys.executable, "-m", "fila", "migrate"],
        env={**os.environ, **settings.to_env()},
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="session")
def migrated(base_settings: Settings) -> Settings:
    """`fila migrate` applied once to this run's database (idempotent: run twice)."""
    for _ in range(2):
        run_migrations(base_settings)
    return base_settings


@pytest.fixture
async def cp(settings: Settings, migrated: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app in process, lifespan included, on this test's vhost/prefix/bucket."""
    app = create_app(settings)
    async with AsyncTestClient(app=app, timeout=30) as client:
        client.headers["apikey"] = settings.api_key
        yield client


def unthrottled(client: AsyncTestClient[Any]) -> None:
    """For a test that sends hundreds of wrong keys on purpose (tests/test_network_safety.py
    checks the throttle): lift FILA_AUTH_FAIL_LIMIT for this in-process app."""
    app = client.app
    assert isinstance(app, Litestar)
    app.state.settings = app.state.settings.replace(auth_fail_limit=1_000_000)


def start_controlplane(spawn: Callable[..., Proc], settings: Settings) -> tuple[Proc, str]:
    """`fila controlplane --no-migrate` started on a free port; the process and its base URL."""
    port = free_port()
    proc = spawn(["controlplane", "--no-migrate"], settings, FILA_HTTP_PORT=str(port))
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture
async def cp_proc(
    settings: Settings, migrated: Settings, spawn: Callable[..., Proc]
) -> AsyncIterator[httpx.AsyncClient]:
    """`fila controlplane` as a real process; an httpx client carrying the apikey."""
    proc, base = start_controlplane(spawn, settings)
    async with httpx.AsyncClient(
        base_url=base, timeout=30, headers={"apikey": settings.api_key}
    ) as client:
        await wait_answering(client, popen=proc.popen, output=proc.output)
        yield client
    assert proc.terminate() == 0, proc.output()
