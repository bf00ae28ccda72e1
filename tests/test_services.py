"""The embedded services: up is idempotent, status shows each answering."""

from __future__ import annotations

import subprocess
import sys

from fila import services
from fila.settings import Settings


def test_every_service_answers(base_settings: Settings) -> None:
    rows = services.status(base_settings)
    assert {r.name for r in rows} == {"redis", "postgres", "rabbitmq", "s3"}
    assert all(r.answering for r in rows), [(r.name, r.detail) for r in rows]


def test_up_again_changes_nothing(base_settings: Settings) -> None:
    before = {s.name: s.pid() for s in services.services(base_settings)}
    services.up(base_settings, report=lambda _: None)
    after = {s.name: s.pid() for s in services.services(base_settings)}
    assert before == after
    assert all(pid is not None for pid in after.values())


def test_external_url_is_not_managed(base_settings: Settings) -> None:
    external = base_settings.replace(redis_url="redis://127.0.0.1:1/0")
    (redis,) = services.services(external, ["redis"])
    assert not redis.embedded
    (row,) = services.status(external, ["redis"])
    assert not row.answering and row.detail


def test_cli_status(base_settings: Settings) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fila", "services", "status"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for name in ("redis", "postgres", "rabbitmq", "s3"):
        assert name in out.stdout
