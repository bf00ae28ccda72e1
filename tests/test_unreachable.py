"""Starting against a dead Redis: a bounded wait, then one line naming FILA_REDIS_URL."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fila.settings import Settings
from tests.support import Proc

DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.mark.parametrize(
    "args",
    [["worker", "ingest"], ["worker", "delivery"], ["controlplane", "--no-migrate"]],
    ids=["ingest", "delivery", "controlplane"],
)
def test_dead_redis_ends_the_start_in_one_line(
    args: list[str], base_settings: Settings, spawn: Callable[..., Proc]
) -> None:
    dead = base_settings.replace(redis_url=DEAD_REDIS, redis_wait_seconds=1.0)
    proc = spawn(args, dead)
    code = proc.popen.wait(timeout=120)
    out = proc.output()
    assert code != 0, out
    assert "Traceback" not in out, out
    naming = [line for line in out.splitlines() if "FILA_REDIS_URL" in line]
    assert len(naming) == 1, out
    assert naming[0].startswith("error: FILA_REDIS_URL: Redis unreachable at 127.0.0.1:1"), out
