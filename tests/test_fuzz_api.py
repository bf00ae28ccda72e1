"""Schema-based fuzzing of the control plane's served OpenAPI, against a real `fila controlplane`.

Run with the admin key, then (fewer examples) with the read-only key, which must get 403 on
every non-GET and be answered on every GET as the admin key is. What is checked on every
generated request (valid and schema-breaking ones, right `apikey`):
- no 5xx, ever;
- every 4xx body is JSON `{"statusCode": <the status>, "message": <non-empty str>, ...}`;
- a 400 also carries `field`, the message reads `<field>: <rule>`, and the field is a field path
  (`name`, `name.sub`, `name[0]`; `body` when the body as a whole is wrong);
- a 404/409 message reads `<field>: <what>` or contains the path parameter value it is about;
- no other 4xx: no 401 (the key is right), no 405 (only declared methods are called).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from fila.settings import Settings
from simulator.benchenv import database
from tests.test_controlplane_support import cp_proc, migrated, run_migrations

__all__ = ["cp_proc", "migrated"]

EXAMPLES = 25
"""Per operation and generation mode: about 40 operations x 2 modes stay near a minute here."""
READONLY_EXAMPLES = 4
"""With the read-only key (valid requests only): the 403s need no depth, the GETs got it."""
READONLY_KEY = "fuzz-readonly-key-0123456789"

SKIPPED = {
    # Server-sent events: the response never ends, so a generated call could only time out.
    # Its auth is covered by tests/test_controlplane.py and its data by tests/test_api_fleet.py.
    ("GET", "/fleet/stream"),
}


def _problem(
    operation: Any, case: Any, response: Any, apikey: str, readonly: bool = False
) -> str | None:
    """Why this response breaks the rules above, or None."""
    status = response.status_code
    if status >= 500:
        return f"{status}: {response.text[:300]}"
    changes = operation.method.upper() not in ("GET", "HEAD", "OPTIONS")
    if readonly and changes and status != 403:
        return f"{status} to the read-only key on a {operation.method.upper()}"
    if status < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{status} body is not JSON: {response.text[:200]!r}"
    if not isinstance(body, dict) or body.get("statusCode") != status:
        return f"{status} body lacks statusCode={status}: {body!r:.200}"
    message = body.get("message")
    if not isinstance(message, str) or not message.strip():
        return f"{status} body has no message: {body!r:.200}"
    if status == 401 and response.request.headers.get("apikey") != apikey:
        return None  # a negative case that broke the declared apikey header itself
    if status in (401, 405):
        return f"{status} with the right key on a declared method: {message}"
    if status == 403:
        if readonly and changes and message.startswith("apikey: "):
            return None
        return f"403 to a key that may call this: {message}"
    path_values = [unquote(str(v)) for v in (case.path_parameters or {}).values()]
    if status == 400:
        field = body.get("field")
        if not isinstance(field, str) or not message.startswith(f"{field}: "):
            return f"400 message does not read '<field>: <rule>': {body!r:.300}"
        if not _FIELD.match(field):
            return f"400 names no field ({field!r}): {message}"
        return None
    if status in (404, 409):
        if _FIELD.match(message.split(": ", 1)[0]) and ": " in message:
            return None  # `<field>: <what is missing or in conflict>`
        if any(v and v in message for v in path_values) or operation.path in message:
            return None
        return f"{status} message names neither a field nor a path value {path_values}: {message}"
    return f"unexpected {status}: {message}"


_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*([.\[].+)?$", re.S)
"""`name`, `name.sub`, `name[0].sub`: a field path whose first segment is an identifier."""


def _fuzz(base_url: str, apikey: str, readonly: bool = False) -> tuple[int, dict[str, str]]:
    """Blocking (schemathesis calls through requests): run from a worker thread."""
    headers = {"apikey": apikey}
    modes = [GenerationMode.POSITIVE]
    if not readonly:
        modes.append(GenerationMode.NEGATIVE)
    schema = schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json", headers=headers)
    found: dict[str, str] = {}
    calls = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the served schema itself must be valid
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        for mode in modes:
            try:
                calls += _fuzz_operation(operation, mode, base_url, headers, found, readonly)
            except hypothesis.errors.Unsatisfiable:
                # Nothing in the operation can break its schema (no parameters, no body).
                if mode is GenerationMode.POSITIVE:
                    raise
    return calls, found


def _fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    headers: dict[str, str],
    found: dict[str, str],
    readonly: bool = False,
) -> int:
    """Calls made; the first problem of the operation in this mode is kept in `found`."""
    label = f"{operation.method.upper()} {operation.path} [{mode.value}]"
    calls = 0

    @hypothesis.settings(
        max_examples=READONLY_EXAMPLES if readonly else EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal calls
        if label in found:
            return
        calls += 1
        response = case.call(base_url=base_url, headers=headers, timeout=60)
        problem = _problem(operation, case, response, headers["apikey"], readonly)
        if problem:
            found[label] = f"{problem} <- {case.as_curl_command()[:400]}"

    run()
    return calls


@pytest.fixture
async def settings(settings: Settings) -> AsyncIterator[Settings]:
    """A PostgreSQL database of its own: the generated requests store random configuration
    (emergency filter, rate limit, webhooks) that later tests of the run must not inherit."""
    name = f"fila_fuzz_{uuid.uuid4().hex[:8]}"
    url = await database(settings, name, create=True)
    # Cases without a right key are the fuzz's to judge (401), not the throttle's (429 past
    # FILA_AUTH_FAIL_LIMIT; tests/test_network_safety.py checks that).
    own = settings.replace(
        database_url=url, api_key_readonly=READONLY_KEY, auth_fail_limit=1_000_000
    )
    try:
        await asyncio.to_thread(run_migrations, own)
        yield own
    finally:
        await database(settings, name, create=False)


async def test_fuzzed_requests_get_no_5xx_and_4xx_that_name_the_field(
    cp_proc: httpx.AsyncClient, settings: Settings
) -> None:
    schema = (await cp_proc.get("/schema/openapi.json")).json()
    declared = sum(
        1
        for path, item in schema["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete", "patch")
        and (method.upper(), path) not in SKIPPED
    )
    assert declared >= 30
    calls, found = await asyncio.to_thread(_fuzz, str(cp_proc.base_url), settings.api_key)
    print(f"fuzz: {declared} operations, {calls} requests, {len(found)} problems")
    assert settings.database_url.rsplit("/", 1)[-1].startswith("fila_fuzz_")
    assert calls >= declared, calls  # every operation really was called
    assert not found, "\n".join(f"{k}: {v}" for k, v in sorted(found.items()))


async def test_fuzzed_requests_with_the_readonly_key_change_nothing(
    cp_proc: httpx.AsyncClient, settings: Settings
) -> None:
    before = (await cp_proc.get("/config/export")).json()
    calls, found = await asyncio.to_thread(_fuzz, str(cp_proc.base_url), READONLY_KEY, True)
    print(f"fuzz (read-only key): {calls} requests, {len(found)} problems")
    assert calls >= 30, calls
    assert not found, "\n".join(f"{k}: {v}" for k, v in sorted(found.items()))
    assert (await cp_proc.get("/config/export")).json() == before
    assert (await cp_proc.get("/config/history")).json()["changes"] == []
