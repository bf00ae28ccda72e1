"""The webhook receiver and the Evolution API stub, exercised over real HTTP."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import msgspec
import pytest
from standardwebhooks.webhooks import Webhook

from fila.settings import Settings
from simulator.benchenv import free_port
from simulator.evolution import EvolutionStub
from simulator.ids import message_id
from simulator.receiver import Receiver
from tests.support import Proc, wait_for

SECRET = "whsec_" + base64.b64encode(b"receiver-test-secret-32-bytes!!!").decode()


def signed(body: bytes, msg_id: str, secret: str = SECRET) -> dict[str, str]:
    now = datetime.now(tz=UTC)
    signature = Webhook(secret).sign(msg_id=msg_id, timestamp=now, data=body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


async def test_receiver_records_and_verifies_signatures() -> None:
    async with Receiver(secret=SECRET) as r, httpx.AsyncClient() as client:
        good = msgspec.json.encode({"event": "messages.upsert", "instance": "i1"})
        ok = await client.post(f"{r.url}/hook/main", content=good, headers=signed(good, "msg_1"))
        assert ok.status_code == 200
        tampered = await client.post(
            f"{r.url}/hook/main",
            content=good.replace(b"i1", b"i2"),
            headers=signed(good, "msg_2"),
        )
        assert tampered.status_code == 200  # recorded, but flagged
        wrong_key = signed(good, "msg_3", secret="whsec_" + base64.b64encode(b"x" * 32).decode())
        await client.post(f"{r.url}/other", content=good, headers=wrong_key)
        await client.post(f"{r.url}/nosig", content=b"not json")
        await r.wait_for_count(4, timeout=10)

    first, second, third, fourth = r.deliveries
    assert (first.verified, second.verified, third.verified, fourth.verified) == (
        True,
        False,
        False,
        False,
    )
    assert first.path == "/hook/main" and third.path == "/other"
    assert first.webhook_id == "msg_1" and first.headers["webhook-id"] == "msg_1"
    assert first.json == {"event": "messages.upsert", "instance": "i1"}
    assert fourth.json is None and fourth.body == b"not json"
    assert len(r.by_event("messages.upsert")) == 3


async def test_receiver_fails_on_demand_then_recovers() -> None:
    async with Receiver() as r, httpx.AsyncClient() as client:
        r.fail_with(503, times=2, retry_after=7)
        r.fail_with(410)
        answers = [(await client.post(r.url, json={"n": n})) for n in range(4)]
        assert [a.status_code for a in answers] == [503, 503, 410, 200]
        assert answers[0].headers["retry-after"] == "7"
        assert "retry-after" not in answers[2].headers
        stats = (await client.get(f"{r.url}/_receiver/stats")).json()
        assert stats["total"] == 4 and stats["accepted"] == 1
        assert stats["byStatus"] == {"503": 2, "410": 1, "200": 1}


async def test_receiver_downtime_refuses_connections_on_the_same_port() -> None:
    async with Receiver() as r, httpx.AsyncClient() as client:
        url = r.url
        await r.go_down()
        with pytest.raises(httpx.ConnectError):
            await client.post(url, json={"n": 1})
        await r.come_up()
        assert r.url == url
        assert (await client.post(url, json={"event": "queue.stats"})).status_code == 200
        assert len(r.by_event("queue.stats")) == 1


async def test_receiver_latency_and_timeouts() -> None:
    async with Receiver() as r, httpx.AsyncClient() as client:
        r.set_latency(2.0)
        with pytest.raises(httpx.ReadTimeout):
            await client.post(r.url, json={"slow": True}, timeout=0.2)
        r.set_latency(0)
        assert (await client.post(r.url, json={"fast": True}, timeout=10)).status_code == 200
        with pytest.raises(TimeoutError):
            await r.wait_for_count(10, timeout=0.5)


async def test_receiver_measures_latency_from_simulated_message_ids() -> None:
    async with Receiver() as r, httpx.AsyncClient() as client:
        body = {"event": "messages.upsert", "data": {"key": {"id": message_id()}}}
        await client.post(r.url, json=body)
        stats = (await client.get(f"{r.url}/_receiver/stats")).json()
        assert stats["latencyMs"]["count"] == 1
        assert stats["latencyMs"]["p50"] >= 0


async def test_evolution_stub_routes_and_apikey() -> None:
    async with EvolutionStub(api_key="k1") as stub, httpx.AsyncClient(base_url=stub.url) as c:
        key = {"remoteJid": "5511999@s.whatsapp.net", "fromMe": False, "id": "ABC"}
        denied = await c.post("/message/sendReaction/inst1", json={"key": key, "reaction": "🔄"})
        assert denied.status_code == 401
        h = {"apikey": "k1"}
        r1 = await c.post(
            "/message/sendReaction/inst1", json={"key": key, "reaction": "🔄"}, headers=h
        )
        assert r1.status_code == 201
        r2 = await c.post(
            "/message/sendText/inst1", json={"number": "5511999", "text": "oi"}, headers=h
        )
        assert r2.status_code == 201
        bad = await c.post("/message/sendText/inst1", json={"text": "oi"}, headers=h)
        assert bad.status_code == 400

        stub.add_media("M1", b"\x4fggS-audio", "audio/ogg; codecs=opus")
        got = await c.post(
            "/chat/getBase64FromMediaMessage/inst1",
            json={"message": {"key": {"id": "M1"}}},
            headers=h,
        )
        assert got.status_code in (200, 201)
        assert base64.b64decode(got.json()["base64"]) == b"\x4fggS-audio"
        assert got.json()["mimetype"] == "audio/ogg; codecs=opus"
        missing = await c.post(
            "/chat/getBase64FromMediaMessage/inst1",
            json={"message": {"key": {"id": "M2"}}},
            headers=h,
        )
        assert missing.status_code == 404

        url = stub.add_blob("a.enc", b"\x00\x01encrypted")
        assert url == f"{stub.url}/media/a.enc"
        blob = await c.get("/media/a.enc")
        assert blob.status_code == 200 and blob.content == b"\x00\x01encrypted"
        assert (await c.get("/media/nope.enc")).status_code == 404

        await stub.wait_for_calls("sendReaction", 2, timeout=5)
        reactions = stub.calls_to("sendReaction", "inst1")
        assert [call.status for call in reactions] == [401, 201]
        assert reactions[1].json == {"key": key, "reaction": "🔄"}
        assert len(stub.calls_to("getBase64")) == 2 and len(stub.calls_to("media")) == 2
        assert {c.route for c in stub.calls} == {"sendReaction", "sendText", "getBase64", "media"}


async def test_evolution_stub_injected_failures_and_latency() -> None:
    async with EvolutionStub(api_key="k") as stub, httpx.AsyncClient(base_url=stub.url) as c:
        stub.add_media("M1", b"data")
        stub.fail_next("getBase64", 2, status=500)
        body = {"message": {"key": {"id": "M1"}}}
        codes = [
            (
                await c.post(
                    "/chat/getBase64FromMediaMessage/i", json=body, headers={"apikey": "k"}
                )
            ).status_code
            for _ in range(3)
        ]
        assert codes == [500, 500, 201]
        stub.set_latency("sendText", 2.0)
        with pytest.raises(httpx.ReadTimeout):
            await c.post(
                "/message/sendText/i",
                json={"number": "1", "text": "x"},
                headers={"apikey": "k"},
                timeout=0.2,
            )
        with pytest.raises(ValueError, match="route must be"):
            stub.fail_next("nope", 1)
        with pytest.raises(TimeoutError):
            await stub.wait_for_calls("sendReaction", 1, timeout=0.3)


async def test_standalone_commands_serve_over_http(
    settings: Settings, spawn: Callable[..., Proc]
) -> None:
    receiver_port, stub_port = free_port(), free_port()
    spawn(["receiver", "--port", str(receiver_port), "--secret", SECRET], settings)
    spawn(["evolution-stub", "--port", str(stub_port), "--api-key", "cli-key"], settings)

    async with httpx.AsyncClient(timeout=5) as client:

        async def answering() -> bool:
            try:
                await client.get(f"http://127.0.0.1:{receiver_port}/_receiver/stats")
                await client.get(f"http://127.0.0.1:{stub_port}/_stub/stats")
            except httpx.HTTPError:
                return False
            return True

        await wait_for(answering, timeout=60, interval=0.2)
        body = b'{"event": "queue.stats"}'
        await client.post(
            f"http://127.0.0.1:{receiver_port}/m", content=body, headers=signed(body, "m1")
        )
        stats = (await client.get(f"http://127.0.0.1:{receiver_port}/_receiver/stats")).json()
        assert stats["verified"] == 1 and stats["byEvent"] == {"queue.stats": 1}

        # Told to fail from outside: status codes, then a short outage on the same port.
        base = f"http://127.0.0.1:{receiver_port}"
        control = f"{base}/_receiver"
        bad = await client.post(f"{control}/fail", json={"times": 2})
        assert bad.status_code == 400 and "status" in bad.json()["error"]
        assert (await client.post(f"{control}/fail", json={"status": 503, "times": 2})).is_success
        codes = [(await client.post(f"{base}/x", json={})).status_code for _ in range(3)]
        assert codes == [503, 503, 200]
        assert (await client.post(f"{control}/down", json={"seconds": 2})).is_success

        async def refused() -> bool:
            try:
                await client.post(f"{base}/x", json={})
            except httpx.ConnectError:
                return True
            return False

        await wait_for(refused, timeout=10, interval=0.05)
        await wait_for(answering, timeout=30, interval=0.2)
        url = f"http://127.0.0.1:{stub_port}/message/sendText/i1"
        assert (await client.post(url, json={"number": "1", "text": "x"})).status_code == 401
        ok = await client.post(
            url, json={"number": "1", "text": "x"}, headers={"apikey": "cli-key"}
        )
        assert ok.status_code == 201


async def test_evolution_stub_keeps_only_the_newest_media() -> None:
    async with EvolutionStub(api_key="k", keep=2) as stub, httpx.AsyncClient() as client:
        urls = [stub.add_blob(f"b{n}.enc", bytes([n])) for n in range(3)]
        for n in range(3):
            stub.add_media(f"M{n}", bytes([n]))
        assert (await client.get(urls[0])).status_code == 404
        assert [(await client.get(u)).content for u in urls[1:]] == [b"\x01", b"\x02"]
        answers = [
            await client.post(
                f"{stub.url}/chat/getBase64FromMediaMessage/i",
                json={"message": {"key": {"id": f"M{n}"}}},
                headers={"apikey": "k"},
            )
            for n in range(3)
        ]
        assert [a.status_code for a in answers] == [404, 201, 201]


def test_percentiles_are_nearest_rank() -> None:
    """p99 of 100 values is the 99th, not the maximum (halves once rounded to even)."""
    from simulator.receiver import percentile

    hundred = [float(n) for n in range(1, 101)]
    assert (percentile(hundred, 99), percentile(hundred, 50), percentile(hundred, 100)) == (
        99.0,
        50.0,
        100.0,
    )
    assert percentile([float(n) for n in range(1, 11)], 95) == 10.0
    assert percentile([7.0], 99) == 7.0
