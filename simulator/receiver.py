"""A webhook receiver for demos, tests and benchmarks: records deliveries, checks signatures,
and fails on demand (status codes, latency, downtime) so retries and dead letters can be seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from typing import Any

import msgspec
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from simulator.httpserver import Request, Response, json_response
from simulator.ids import sent_at_ms
from simulator.served import Served

STATS_PATH = "/_receiver/stats"
CONTROL_PREFIX = "/_receiver/"
"""POST `fail` {status, times, retryAfter}, `latency` {seconds}, `down` {seconds}."""


class Delivery(msgspec.Struct, kw_only=True):
    """One request the receiver got (failed-on-purpose ones included)."""

    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    verified: bool
    webhook_id: str | None
    received_at: float
    status: int = 200
    """What the receiver answered."""
    latency_ms: float | None = None
    """received_at minus the payload's Fila `receivedAt`/`webhook-timestamp`, when known."""


class _Failure(msgspec.Struct):
    status: int
    remaining: int
    retry_after: int | None


class Receiver(Served):
    """`async with Receiver(secret) as r:` a real HTTP server recording each delivery."""

    def __init__(self, secret: str | None = None, port: int = 0) -> None:
        self._verifier = Webhook(secret) if secret else None
        super().__init__(self._handle, port)
        self.deliveries: list[Delivery] = []
        self.arrivals: list[str | None] = []
        """The webhook-id of every POST as it arrives, answered or not (a sender may die first)."""
        self._failures: list[_Failure] = []
        self._latency = 0.0
        self._arrived = asyncio.Event()
        self._outage: asyncio.Task[None] | None = None
        self.started_at = time.time()

    # ------------------------------------------------------------------ lifecycle

    async def __aexit__(self, *exc: Any) -> None:
        if self._outage is not None:
            self._outage.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._outage
        await super().__aexit__(*exc)

    async def go_down(self) -> None:
        """Stop listening: new connections are refused until `come_up()`."""
        await self._server.stop()

    async def come_up(self) -> None:
        await self._server.start()

    # ------------------------------------------------------------------ behaviour knobs

    def fail_with(self, status: int, times: int = 1, retry_after: int | None = None) -> None:
        """The next `times` requests answer `status` (with Retry-After when given)."""
        self._failures.append(_Failure(status, times, retry_after))

    def set_latency(self, seconds: float) -> None:
        self._latency = max(0.0, seconds)

    # ------------------------------------------------------------------ queries

    def by_event(self, name: str) -> list[dict[str, Any]]:
        """JSON bodies (accepted or not) whose "event" equals `name`."""
        return [
            d.json
            for d in self.deliveries
            if isinstance(d.json, dict) and d.json.get("event") == name
        ]

    def accepted(self) -> list[Delivery]:
        return [d for d in self.deliveries if d.status < 300]

    async def wait_for_count(self, n: int, timeout: float = 30) -> list[Delivery]:
        """Wait until at least `n` requests were recorded; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{len(self.deliveries)} deliveries after {timeout}s, wanted {n}"
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(left, 0.5))
        return self.deliveries

    def stats(self) -> dict[str, Any]:
        events = Counter(
            str(d.json.get("event")) if isinstance(d.json, dict) else "(not json)"
            for d in self.deliveries
        )
        statuses = Counter(str(d.status) for d in self.deliveries)
        ids = [d.webhook_id for d in self.accepted() if d.webhook_id]
        accepted = self.accepted()
        latencies = sorted(d.latency_ms for d in accepted if d.latency_ms is not None)
        by_instance = Counter(
            str(d.json.get("instance"))
            for d in accepted
            if isinstance(d.json, dict) and d.json.get("event") == "messages.upsert"
        )
        return {
            "total": len(self.deliveries),
            "accepted": len(self.accepted()),
            "acceptedBytes": sum(len(d.body) for d in accepted),
            "verified": sum(1 for d in self.deliveries if d.verified),
            "unverified": sum(1 for d in self.deliveries if not d.verified),
            "duplicates": len(ids) - len(set(ids)),
            "byEvent": dict(events),
            "byStatus": dict(statuses),
            "latencyMs": _percentiles(latencies),
            "byInstance": dict(by_instance),
            "firstAt": accepted[0].received_at if accepted else None,
            "lastAt": accepted[-1].received_at if accepted else None,
            "startedAt": self.started_at,
        }

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: Request) -> Response:
        if request.method == "GET" and request.path == STATS_PATH:
            return json_response(self.stats())
        if request.method == "DELETE" and request.path == STATS_PATH:
            self.deliveries.clear()
            return json_response({"cleared": True})
        if request.method == "POST" and request.path.startswith(CONTROL_PREFIX):
            return self._control(request)
        received = time.time()
        self.arrivals.append(request.headers.get("webhook-id"))
        if self._latency:
            await asyncio.sleep(self._latency)
        status, extra = self._next_status()
        body_json = request.json()
        self.deliveries.append(
            Delivery(
                path=request.path,
                headers=request.headers,
                body=request.body,
                json=body_json,
                verified=self._verify(request),
                webhook_id=request.headers.get("webhook-id"),
                received_at=received,
                status=status,
                latency_ms=_latency_ms(body_json, request.headers, received),
            )
        )
        self._arrived.set()
        return json_response({"received": status < 300}, status=status, **extra)

    def _control(self, request: Request) -> Response:
        """Failure injection for a receiver in another process (`fila receiver`, the demo)."""
        body = request.json()
        if not isinstance(body, dict):
            return json_response({"error": "body must be a JSON object"}, 400)
        action = request.path[len(CONTROL_PREFIX) :]
        try:
            if action == "fail":
                status = int(body["status"])
                if not 100 <= status <= 599:
                    return json_response({"error": "status must be an HTTP status code"}, 400)
                retry = body.get("retryAfter")
                self.fail_with(status, int(body.get("times", 1)), int(retry) if retry else None)
            elif action == "latency":
                self.set_latency(float(body["seconds"]))
            elif action == "down":
                seconds = float(body["seconds"])
                if not 0 < seconds <= 600:
                    return json_response({"error": "seconds must be in (0, 600]"}, 400)
                self._outage = asyncio.create_task(self._down_for(seconds))
            else:
                return json_response({"error": f"unknown action {action!r}"}, 404)
        except KeyError as exc:
            return json_response({"error": f"{exc.args[0]} is required"}, 400)
        except (TypeError, ValueError):
            return json_response({"error": "fields must be numbers"}, 400)
        return json_response({"ok": True, "action": action})

    async def _down_for(self, seconds: float) -> None:
        await asyncio.sleep(0.05)  # let the answer to this request leave first
        await self.go_down()
        await asyncio.sleep(seconds)
        await self.come_up()

    def _next_status(self) -> tuple[int, dict[str, str]]:
        while self._failures:
            failure = self._failures[0]
            if failure.remaining <= 0:
                self._failures.pop(0)
                continue
            failure.remaining -= 1
            extra = {"retry-after": str(failure.retry_after)} if failure.retry_after else {}
            return failure.status, extra
        return 200, {}

    def _verify(self, request: Request) -> bool:
        if self._verifier is None:
            return False
        try:
            self._verifier.verify(request.body, request.headers, json_parse=False)
        except (WebhookVerificationError, ValueError, UnicodeDecodeError):
            return False
        return True


def _latency_ms(body: Any, headers: dict[str, str], received: float) -> float | None:
    """Age of a delivery: from the simulated send time carried in the message id, else from
    Fila's `receivedAt` when the payload or a header says so."""
    if isinstance(body, dict):
        data = body.get("data")
        data = data if isinstance(data, dict) else {}
        key = data.get("key")
        if isinstance(key, dict) and isinstance(key.get("id"), str):
            sent = sent_at_ms(key["id"])
            if sent is not None:
                return received * 1000 - sent
        for holder in (body, data):
            seen = holder.get("receivedAt")
            if isinstance(seen, int | float) and seen > 0:
                return received * 1000 - float(seen)
    stamp = headers.get("x-fila-received-at")
    if stamp:
        try:
            return received * 1000 - float(stamp)
        except ValueError:
            return None
    return None


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "count": 0}
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": values[-1],
        "count": len(values),
    }


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        raise ValueError("no values")
    # ceil, not round(x + 0.5): Python rounds halves to even, which put p99 of 100 values on
    # the 100th (the maximum) instead of the 99th.
    rank = max(1, min(len(sorted_values), math.ceil(pct / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


async def serve_forever(secret: str | None, port: int) -> None:
    """`fila receiver`: run until cancelled (Ctrl-C / SIGTERM handled by the caller)."""
    async with Receiver(secret=secret, port=port) as receiver:
        print(f"receiver listening on {receiver.url} (stats at {receiver.url}{STATS_PATH})")
        await asyncio.Event().wait()
