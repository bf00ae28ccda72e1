"""Starting against a dead dependency: a bounded wait, then one line naming its variable."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fila.settings import Settings
from tests.support import Proc

DEAD = {
    "redis_url": ("redis://127.0.0.1:1/0", "FILA_REDIS_URL: Redis unreachable at 127.0.0.1:1"),
    "rabbitmq_url": (
        "amqp://guest:guest@127.0.0.1:1/",
        "FILA_RABBITMQ_URL: RabbitMQ unreachable at 127.0.0.1:1",
    ),
    "database_url": (
        "postgresql://fila:fila@127.0.0.1:1/fila",
        "FILA_DATABASE_URL: PostgreSQL unreachable at 127.0.0.1:1",
    ),
    "s3_endpoint_url": (
        "http://127.0.0.1:1",
        "FILA_S3_ENDPOINT_URL: S3 unreachable at 127.0.0.1:1",
    ),
}
CASES = [
    (["worker", "ingest"], "redis_url"),
    (["worker", "delivery"], "redis_url"),
    (["controlplane", "--no-migrate"], "redis_url"),
    (["worker", "ingest"], "rabbitmq_url"),
    (["worker", "delivery"], "rabbitmq_url"),
    (["controlplane", "--no-migrate"], "rabbitmq_url"),
    (["controlplane", "--no-migrate"], "database_url"),
    (["controlplane"], "database_url"),
    (["controlplane", "--no-migrate"], "s3_endpoint_url"),
]


@pytest.mark.parametrize(("args", "field"), CASES, ids=[f"{' '.join(a)}-{f}" for a, f in CASES])
def test_a_dead_dependency_ends_the_start_in_one_line(
    args: list[str], field: str, base_settings: Settings, spawn: Callable[..., Proc]
) -> None:
    url, message = DEAD[field]
    dead = base_settings.replace(**{field: url, "startup_wait_seconds": 1.0})
    proc = spawn(args, dead)
    code = proc.popen.wait(timeout=120)
    out = proc.output()
    assert code != 0, out
    assert "Traceback" not in out, out
    variable = message.split(":", 1)[0]
    naming = [line for line in out.splitlines() if variable in line]
    assert len(naming) == 1, out
    assert naming[0].startswith(f"error: {message}"), out
