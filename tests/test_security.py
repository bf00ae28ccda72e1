"""Security against the real servers: apikey near misses, secrets kept out of every log,
no audio byte written to local disk (strace), private webhook targets refused."""

from __future__ import annotations

import hmac
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from controlplane.app import create_app
from fila.settings import Settings
from tests.test_controlplane_support import cp, migrated

__all__ = ["cp", "migrated"]

# ---------------------------------------------------------------------------------- apikey


def _near_misses(key: str) -> list[str]:
    last = key[-1]
    return [
        key[:-1] + ("A" if last != "A" else "B"),  # same length, last byte differs
        ("A" if key[0] != "A" else "B") + key[1:],  # same length, first byte differs
        key[:-1],  # a prefix
        key + "x",  # the key plus one byte
        key.upper() if key.upper() != key else key.lower(),  # case folded
        f" {key}",  # padded
    ]


async def test_near_miss_keys_are_refused_on_every_route(cp: AsyncTestClient[Any]) -> None:
    """tests/test_controlplane.py covers missing/empty/unrelated keys; these are near misses."""
    key = cp.headers["apikey"]
    schema = (await cp.get("/schema/openapi.json")).json()
    checked = 0
    for path, item in schema["paths"].items():
        if path in ("/healthz", "/readyz", "/fleet/stream"):  # probes; SSE needs a stream
            continue
        concrete = path.replace("{", "").replace("}", "")
        for method in item:
            if method not in ("get", "post", "put", "delete", "patch"):
                continue
            for wrong in _near_misses(key):
                response = await cp.request(method.upper(), concrete, headers={"apikey": wrong})
                assert response.status_code == 401, (method, path, wrong, response.text)
                assert response.json()["message"] == "apikey: wrong key"
                checked += 1
    assert checked >= 30 * 6
    assert (await cp.get("/queue/stats")).status_code == 200  # the right key still works


async def test_the_key_is_decided_by_a_constant_time_comparison(
    cp: AsyncTestClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behaviour, not source: swap `hmac.compare_digest` and watch it alone decide."""
    key = cp.headers["apikey"]
    calls: list[tuple[bytes, bytes]] = []
    verdict: list[bool] = []

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return verdict[0]

    monkeypatch.setattr(hmac, "compare_digest", spy)
    verdict.append(True)
    let_in = await cp.get("/queue/stats", headers={"apikey": "not-the-key"})
    assert let_in.status_code == 200, let_in.text
    assert calls == [(b"not-the-key", key.encode())]
    verdict[0] = False
    kept_out = await cp.get("/queue/stats", headers={"apikey": key})
    assert kept_out.status_code == 401
    assert calls[-1] == (key.encode(), key.encode())


# ---------------------------------------------------------------------------------- webhook URLs

PRIVATE_TARGETS = [
    "http://vm/hook",  # a host name /etc/hosts maps to 127.0.0.1
    "http://localhost./hook",  # fully qualified localhost
    "http://[::1]:8080/hook",  # IPv6 loopback
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6 loopback
    "http://127.1/hook",  # short form of 127.0.0.1
    "http://2130706433/hook",  # 127.0.0.1 as one integer
    "http://0.0.0.0/hook",
    "http://10.20.30.40/hook",
    "http://172.16.0.1/hook",
    "http://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
    "http://[fe80::1]/hook",
    "http://[fc00::1]/hook",  # IPv6 unique local
    "http://100.64.0.1/hook",  # carrier-grade NAT, not reachable from the internet
]


async def test_private_targets_of_every_shape_are_refused_when_blocked(
    settings: Settings, migrated: Settings
) -> None:
    """tests/test_api_webhooks.py covers 127.0.0.1, 10/8, `localhost` and 192.168/16."""
    guarded = settings.replace(webhook_block_private=True)
    async with AsyncTestClient(app=create_app(guarded)) as client:
        client.headers["apikey"] = settings.api_key
        for url in PRIVATE_TARGETS:
            for method, body, field in (
                ("POST", {"principal": {"enabled": True, "url": url}}, "principal.url"),
                ("PUT", {"monitoramento": {"enabled": True, "url": url}}, "monitoramento.url"),
            ):
                refused = await client.request(method, "/webhook/global/config", json=body)
                assert refused.status_code == 400, (url, refused.text)
                assert refused.json()["field"] == field, refused.text
            test = await client.post("/webhook/global/test", json={"url": url})
            assert test.status_code == 400 and test.json()["field"] == "url", (url, test.text)
        bad_shape = [
            ("gopher://example.com/x", "http or https"),
            ("http:///nohost", "http or https"),
            ("http://exa mple.com/x", "control characters"),
            ("http://example.com/\r\nX-Injected: 1", "control characters"),
            ("http://example.com:99999/x", "port"),
        ]
        for url, words in bad_shape:
            refused = await client.post(
                "/webhook/global/config", json={"principal": {"enabled": True, "url": url}}
            )
            assert refused.status_code == 400, (url, refused.text)
            assert refused.json()["field"] == "principal.url"
            assert words in refused.json()["message"], refused.text
        header = await client.post(
            "/webhook/global/config", json={"headers": {"x-team": "a\r\nX-Injected: 1"}}
        )
        assert header.status_code == 400 and header.json()["field"] == "headers.x-team"
        # A public address is still accepted with the guard on (no DNS needed for a literal).
        ok = await client.post(
            "/webhook/global/config",
            json={"principal": {"enabled": False, "url": "http://93.184.215.14/hook"}},
        )
        assert ok.status_code == 200, ok.text
