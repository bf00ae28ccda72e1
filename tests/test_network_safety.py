"""Safe on a network (issue 19), against real `fila controlplane` processes: default secrets
refused off loopback, wrong keys throttled across replicas, the read-only key walked over the
served OpenAPI schema."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from fila.exposure import SECRETS, is_loopback
from fila.settings import Settings, env_name
from tests.support import Proc, wait_answering
from tests.test_controlplane_support import free_port, migrated, start_controlplane

__all__ = ["migrated"]

OWN_SECRETS = {
    "api_key": "test-admin-key-0123456789",
    "webhook_secret": "whsec_dGVzdC1vd24td2ViaG9vay1zZWNyZXQtMzJieXRlcyE=",
    "evolution_api_key": "test-evolution-key-0123456789",
}
READONLY = "test-readonly-key-0123456789"


def _one_line(proc: Proc) -> str:
    lines = [line for line in proc.output().splitlines() if line.strip()]
    assert len(lines) == 1, proc.output()
    return lines[0]


async def _exits_within(proc: Proc, seconds: float) -> float:
    started = time.monotonic()
    while proc.popen.poll() is None:
        assert time.monotonic() - started < seconds, f"still running after {seconds}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def test_loopback_is_judged_as_written() -> None:
    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "api.localhost."):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.5", "fila.example.com", "localhost.example.com"):
        assert not is_loopback(host), host


async def test_each_default_secret_stops_a_controlplane_listening_off_loopback(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    defaults = Settings()
    for field in SECRETS:
        # The other two are set, so the one default left is what the process must name.
        chosen = {k: v for k, v in OWN_SECRETS.items() if k != field}
        exposed = settings.replace(**chosen, **{field: getattr(defaults, field)})
        proc = spawn(
            ["controlplane", "--no-migrate"],
            exposed,
            FILA_HTTP_HOST="0.0.0.0",
            FILA_HTTP_PORT=str(free_port()),
        )
        took = await _exits_within(proc, 5.0)
        assert proc.popen.returncode != 0, proc.output()
        line = _one_line(proc)
        assert env_name(field) in line and "FILA_HTTP_HOST" in line, line
        assert getattr(defaults, field) not in line  # names the variable, never echoes a secret
        print(f"{env_name(field)}: exit {proc.popen.returncode} in {took:.2f}s: {line}")


async def test_workers_refuse_the_default_of_the_secret_they_use(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    """A worker listens nowhere; a public FILA_SERVER_URL puts it on a network all the same."""
    for role, field in (("delivery", "webhook_secret"), ("ingest", "evolution_api_key")):
        proc = spawn(
            ["worker", role],
            settings.replace(api_key=OWN_SECRETS["api_key"]),
            FILA_SERVER_URL="https://fila.example.com",
            **{env_name(field): getattr(Settings(), field)},
        )
        await _exits_within(proc, 5.0)
        assert proc.popen.returncode != 0
        line = _one_line(proc)
        assert env_name(field) in line and "FILA_SERVER_URL" in line, line


async def test_on_loopback_the_documented_defaults_still_start(
    settings: Settings, migrated: Settings, spawn: Callable[..., Proc]
) -> None:
    defaults = Settings()
    plain = settings.replace(**{f: getattr(defaults, f) for f in SECRETS})
    proc, base = start_controlplane(spawn, plain)
    async with httpx.AsyncClient(base_url=base, headers={"apikey": defaults.api_key}) as client:
        await wait_answering(client, popen=proc.popen, output=proc.output)
        assert (await client.get("/queue/stats")).status_code == 200


async def _controlplane(
    spawn: Callable[..., Proc], settings: Settings
) -> tuple[Proc, httpx.AsyncClient]:
    proc, base = start_controlplane(spawn, settings)
    return proc, httpx.AsyncClient(base_url=base, timeout=30)


@pytest.fixture
async def replicas(
    settings: Settings, migrated: Settings, spawn: Callable[..., Proc]
) -> AsyncIterator[tuple[Settings, list[httpx.AsyncClient]]]:
    """Two control planes sharing Redis prefix and database, with an admin and a read-only key."""
    keyed = settings.replace(api_key=OWN_SECRETS["api_key"], api_key_readonly=READONLY)
    started = [await _controlplane(spawn, keyed) for _ in range(2)]
    try:
        for proc, client in started:
            await wait_answering(client, popen=proc.popen, output=proc.output)
        yield keyed, [client for _, client in started]
    finally:
        for _, client in started:
            await client.aclose()


async def test_wrong_keys_are_throttled_by_address_across_two_replicas(
    replicas: tuple[Settings, list[httpx.AsyncClient]],
) -> None:
    settings, (a, b) = replicas
    limit = settings.auth_fail_limit
    assert limit == 20  # the documented default (README, `fila settings`)
    statuses: list[int] = []
    for n in range(100):
        replica = (a, b)[n % 2]  # alternate: each replica alone sees only half of them
        wrong = await replica.get("/queue/stats", headers={"apikey": f"guess-{n}"})
        statuses.append(wrong.status_code)
        if wrong.status_code == 429:
            retry = int(wrong.headers["retry-after"])
            assert 1 <= retry <= settings.auth_fail_window_seconds, retry
            body = wrong.json()
            assert body["statusCode"] == 429 and body["field"] == "apikey", body
            assert body["retryAfter"] == retry
        for client in (a, b):  # the right keys are never throttled
            right = await client.get("/queue/stats", headers={"apikey": settings.api_key})
            assert right.status_code == 200, (n, right.text)
        readonly = await replica.get("/queue/stats", headers={"apikey": READONLY})
        assert readonly.status_code == 200, (n, readonly.text)
    assert statuses == [401] * limit + [429] * (100 - limit), statuses
    # A missing header counts as a wrong one from the same address.
    assert (await b.get("/queue/stats")).status_code == 429


def _concrete(path: str) -> str:
    return path.replace("{instance}", "ro-walk").replace("{", "").replace("}", "")


async def test_the_readonly_key_may_get_everything_and_change_nothing(
    replicas: tuple[Settings, list[httpx.AsyncClient]],
) -> None:
    settings, (client, _) = replicas
    admin = {"apikey": settings.api_key}
    readonly = {"apikey": READONLY}
    schema = (await client.get("/schema/openapi.json", headers=readonly)).json()
    # The instance named in the paths exists, so its GETs answer 200 rather than 404.
    known = {"minDurationSeconds": 3, "maxDurationSeconds": 7200, "enabled": True}
    put = await client.put("/instance/ro-walk/filters/audio", headers=admin, json=known)
    assert put.status_code == 200, put.text
    before = (await client.get("/config/export", headers=admin)).json()
    history = (await client.get("/config/history", headers=admin)).json()["count"]
    gets = changes = 0
    for path, item in schema["paths"].items():
        concrete = _concrete(path)
        for method in item:
            if method not in ("get", "post", "put", "delete", "patch"):
                continue
            if method == "get":
                if path == "/fleet/stream":
                    async with client.stream("GET", concrete, headers=readonly) as response:
                        assert response.status_code == 200
                else:
                    response = await client.get(concrete, headers=readonly)
                    assert response.status_code == 200, (path, response.text)
                gets += 1
                continue
            response = await client.request(method.upper(), concrete, headers=readonly, json={})
            assert response.status_code == 403, (method, path, response.text)
            body: dict[str, Any] = response.json()
            assert body["statusCode"] == 403 and body["message"].startswith("apikey: "), body
            changes += 1
    assert gets >= 15 and changes >= 20, (gets, changes)
    # Nothing changed, nothing recorded, and the admin key still changes things.
    assert (await client.get("/config/export", headers=admin)).json() == before
    assert (await client.get("/config/history", headers=admin)).json()["count"] == history
    ok = await client.put("/cleanup/schedule", headers=admin, json={"retentionDays": 8})
    assert ok.status_code == 200, ok.text
