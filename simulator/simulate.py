"""The load generator: Evolution API events for N instances at a steady rate, published to the
Evolution topic exchange (with confirms) or POSTed to the control plane's webhook route.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aio_pika
import httpx
import msgspec
from aio_pika.abc import AbstractExchange, AbstractRobustConnection

from fila.settings import Settings
from simulator.events import CATEGORIES, VOICE, Built, Category, EventFactory, instance_name
from simulator.evolution import EvolutionStub

Progress = Callable[[int, int], None]


class Summary(msgspec.Struct, kw_only=True):
    """What was sent, by category, so a reader can reconcile what Fila did with it."""

    target: str
    instances: int
    ratePerMinute: float
    durationSeconds: float
    planned: int
    sent: int
    failed: int
    byCategory: dict[str, int]
    byInstance: dict[str, int]
    httpStatus: dict[str, int] = msgspec.field(default_factory=dict)
    elapsedSeconds: float = 0.0
    startedAt: float = 0.0
    firstError: str | None = None

    @property
    def voice_ok(self) -> int:
        """Voice notes within the default filter: those Fila should deliver."""
        return sum(self.byCategory.get(c, 0) for c in VOICE)


class Simulator:
    """Sends `rate` events a minute for `duration` seconds over `instances` instances."""

    def __init__(
        self,
        settings: Settings,
        stub: EvolutionStub,
        *,
        instances: int = 500,
        rate: float = 500.0,
        duration: float = 60.0,
        http_url: str | None = None,
        seed: int | None = None,
        weights: dict[Category, float] | None = None,
        hot_instance: str | None = None,
        hot_factor: float = 10.0,
        concurrency: int = 64,
        server_url: str | None = None,
        max_voice_seconds: int = 90,
    ) -> None:
        if instances < 1:
            raise ValueError("instances must be at least 1")
        if rate <= 0:
            raise ValueError("rate must be positive")
        if duration <= 0:
            raise ValueError("duration must be positive")
        self.settings = settings
        self.rng = random.Random(seed)
        self.factory = EventFactory(
            stub,
            server_url=server_url or stub.url,
            rng=self.rng,
            weights=weights,
            max_voice_seconds=max_voice_seconds,
        )
        self.names = [instance_name(n) for n in range(1, instances + 1)]
        self.instance_weights = [1.0] * len(self.names)
        if hot_instance is not None:
            if hot_instance not in self.names:
                self.names.append(hot_instance)
                self.instance_weights.append(1.0)
            self.instance_weights[self.names.index(hot_instance)] = hot_factor
        self.rate = rate
        self.duration = duration
        self.http_url = http_url
        self.concurrency = max(1, concurrency)
        self.sent: list[Built] = []
        """Every event sent successfully, in order, without its body (for reconciliation)."""

    @property
    def planned(self) -> int:
        return max(1, round(self.rate * self.duration / 60.0))

    def sent_so_far(self) -> Summary:
        """What was sent until now, for a run that was stopped before its end."""
        by_category: Counter[str] = Counter({c: 0 for c in CATEGORIES})
        by_category.update(b.category for b in self.sent)
        return Summary(
            target="(stopped early)",
            instances=len(self.names),
            ratePerMinute=self.rate,
            durationSeconds=self.duration,
            planned=self.planned,
            sent=len(self.sent),
            failed=0,
            byCategory=dict(by_category),
            byInstance=dict(Counter(b.instance for b in self.sent)),
        )

    def _next(self) -> Built:
        instance = self.rng.choices(self.names, self.instance_weights)[0]
        return self.factory.build(self.factory.draw(), instance)

    async def run(self, progress: Progress | None = None) -> Summary:
        if self.http_url:
            async with httpx.AsyncClient(timeout=30) as client:
                return await self._drive(
                    _HttpSink(client, self.http_url, self.settings.api_key), progress
                )
        connection = await aio_pika.connect_robust(self.settings.rabbitmq_url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                self.settings.evolution_exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            sink = _AmqpSink(connection, exchange, self.settings.evolution_routing_key)
            return await self._drive(sink, progress)
        finally:
            await connection.close()

    async def _drive(self, sink: _Sink, progress: Progress | None) -> Summary:
        planned = self.planned
        per_second = self.rate / 60.0
        started = time.monotonic()
        started_wall = time.time()
        by_category: Counter[str] = Counter({c: 0 for c in CATEGORIES})
        by_instance: Counter[str] = Counter()
        failures: list[str] = []
        issued = 0
        semaphore = asyncio.Semaphore(self.concurrency)
        pending: set[asyncio.Task[None]] = set()

        async def send(built: Built) -> None:
            async with semaphore:
                try:
                    await sink.send(built)
                except Exception as exc:  # counted and reported, never silently dropped
                    failures.append(f"{type(exc).__name__}: {exc}")
                    return
            self.sent.append(msgspec.structs.replace(built, body=b""))  # bounded memory
            by_category[built.category] += 1
            by_instance[built.instance] += 1
            if progress:
                progress(len(self.sent) + len(failures), planned)

        try:
            while issued < planned:
                due = min(planned, int((time.monotonic() - started) * per_second) + 1)
                while issued < due:
                    task = asyncio.create_task(send(self._next()))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    issued += 1
                    if issued % 32 == 0:
                        await asyncio.sleep(0)
                wait = (issued / per_second) - (time.monotonic() - started)
                await asyncio.sleep(max(0.0, min(wait, 0.05)))
            if pending:
                await asyncio.gather(*pending)
        except asyncio.CancelledError:
            for task in pending:
                task.cancel()
            raise
        return Summary(
            target=sink.describe(),
            instances=len(self.names),
            ratePerMinute=self.rate,
            durationSeconds=self.duration,
            planned=planned,
            sent=len(self.sent),
            failed=len(failures),
            byCategory=dict(by_category),
            byInstance=dict(by_instance),
            httpStatus=sink.statuses(),
            elapsedSeconds=round(time.monotonic() - started, 3),
            startedAt=started_wall,
            firstError=failures[0] if failures else None,
        )


class _Sink:
    async def send(self, built: Built) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def statuses(self) -> dict[str, int]:
        return {}


class _AmqpSink(_Sink):
    def __init__(
        self, connection: AbstractRobustConnection, exchange: AbstractExchange, routing_key: str
    ) -> None:
        self.connection = connection
        self.exchange = exchange
        self.routing_key = routing_key

    async def send(self, built: Built) -> None:
        message = aio_pika.Message(
            built.body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=built.message_id,
            timestamp=time.time(),
        )
        await self.exchange.publish(message, routing_key=self.routing_key)

    def describe(self) -> str:
        return f"amqp exchange {self.exchange.name} ({self.routing_key})"


class _HttpSink(_Sink):
    """POSTs to the control plane; a 4xx answer to a malformed body is expected, not a failure."""

    def __init__(self, client: httpx.AsyncClient, url: str, api_key: str) -> None:
        self.client = client
        self.url = url
        self.api_key = api_key
        self._statuses: Counter[str] = Counter()

    async def send(self, built: Built) -> None:
        response = await self.client.post(
            self.url,
            content=built.body,
            headers={"apikey": self.api_key, "content-type": "application/json"},
        )
        self._statuses[str(response.status_code)] += 1
        if response.status_code >= 500 or (
            response.status_code >= 400 and built.category != "malformed"
        ):
            raise RuntimeError(f"{self.url} answered {response.status_code}: {response.text[:200]}")

    def describe(self) -> str:
        return f"http {self.url}"

    def statuses(self) -> dict[str, int]:
        return dict(self._statuses)


def summary_rows(summary: Summary) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = [(c, str(summary.byCategory.get(c, 0))) for c in CATEGORIES]
    rows.append(("voice notes to deliver", str(summary.voice_ok)))
    rows.append(("sent / planned", f"{summary.sent} / {summary.planned}"))
    rows.append(("failed", str(summary.failed)))
    for status, count in sorted(summary.httpStatus.items()):
        rows.append((f"http {status}", str(count)))
    rows.append(("elapsed", f"{summary.elapsedSeconds:.1f} s"))
    return rows


def summary_json(summary: Summary) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(summary)
    data["voiceOk"] = summary.voice_ok
    return data
