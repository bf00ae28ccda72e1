"""`fila dlq list|show|replay`: look at dead letters and send them back, from a terminal."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TypeVar

import msgspec
import typer
from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import AMQPError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from fila import dlq as dead_letters
from fila import topology
from fila.settings import Settings, SettingsError, get_settings

console = Console()
T = TypeVar("T")


class Stage(StrEnum):
    delivery = "delivery"
    ingest = "ingest"
    monitoring = "monitoring"


QueueOpt = typer.Option(
    Stage.delivery, "--queue", help="Which dead letters: delivery, ingest or monitoring."
)
InstanceOpt = typer.Option(None, "--instance", help="Only this instance.")
ReasonOpt = typer.Option(None, "--reason", help="Only reasons containing this text.")


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    return typer.Exit(1)


def _settings() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        raise _fail(str(exc)) from None


_QUEUES = {
    Stage.delivery: topology.GLOBAL_DLQ,
    Stage.ingest: topology.INGEST_DLQ,
    Stage.monitoring: topology.MONITORING_DLQ,
}


def _queue(stage: Stage) -> str:
    return _QUEUES[stage]


def _target(stage: Stage, settings: Settings) -> str:
    """The work queue a replayed dead letter goes back to."""
    if stage is Stage.ingest:
        return settings.ingest_queue
    return topology.MONITORING_QUEUE if stage is Stage.monitoring else topology.GLOBAL_QUEUE


def _with_channel(settings: Settings, work: Callable[[AbstractChannel], Awaitable[T]]) -> T:
    """Run `work` on a fresh channel; broker trouble becomes one error line."""

    async def go() -> T:
        connection = await topology.connect(settings)
        try:
            channel = await connection.channel(publisher_confirms=True)
            await topology.declare_global(channel, settings)
            await topology.declare_ingest_dlq(channel, settings)
            await topology.declare_monitoring(channel, settings)
            return await work(channel)
        finally:
            await connection.close()

    # The broker client's own retry chatter would bury the one-line error below.
    for name in ("aio_pika", "aiormq"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return asyncio.run(go())
    except (OSError, ConnectionError, AMQPError) as exc:
        raise _fail(
            f"RabbitMQ unreachable at {settings.rabbitmq_url.split('@')[-1]}: {exc}"
        ) from None


def register(app: typer.Typer) -> None:
    dlq = typer.Typer(help="Dead letters of delivery, ingest and monitoring: list, show, replay.")
    app.add_typer(dlq, name="dlq")

    @dlq.command("list")
    def list_(
        queue: Stage = QueueOpt,
        instance: str | None = InstanceOpt,
        reason: str | None = ReasonOpt,
        limit: int = typer.Option(100, "--limit", min=1, help="At most this many."),
    ) -> None:
        """Dead letters in queue order (they stay in the queue)."""
        settings = _settings()
        name = _queue(queue)
        letters = _with_channel(
            settings,
            lambda ch: dead_letters.browse(ch, name, instance=instance, reason=reason, limit=limit),
        )
        table = Table("id", "instance", "reason", "status", "attempts", "failed at", title=name)
        for x in letters:
            table.add_row(
                x.id,
                x.instance or "",
                x.reason,
                "" if x.statusCode is None else str(x.statusCode),
                str(x.attempts),
                x.failedAt or "",
            )
        console.print(table)
        console.print(f"{len(letters)} dead letter(s)")

    @dlq.command("show")
    def show(
        message_id: str = typer.Argument(..., help="The dead letter's id (idempotency key)."),
        queue: Stage = QueueOpt,
    ) -> None:
        """One dead letter in full: reason, status, last response, body."""
        settings = _settings()
        name = _queue(queue)
        letters = _with_channel(settings, lambda ch: dead_letters.browse(ch, name, limit=1_000_000))
        found = next((x for x in letters if x.id == message_id), None)
        if found is None:
            raise _fail(f"id: no dead letter {message_id!r} in {name}")
        print(json.dumps(msgspec.to_builtins(found), indent=2, ensure_ascii=False))

    @dlq.command("replay")
    def replay(
        queue: Stage = QueueOpt,
        instance: str | None = InstanceOpt,
        reason: str | None = ReasonOpt,
        limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many."),
    ) -> None:
        """Send dead letters back to their work queue with their original id."""
        settings = _settings()
        name = _queue(queue)
        target = _target(queue, settings)
        with Progress(
            TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), console=console
        ) as bar:
            task = bar.add_task("replay", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = _with_channel(
                settings,
                lambda ch: dead_letters.replay(
                    ch,
                    name,
                    instance=instance,
                    reason=reason,
                    limit=limit,
                    progress=progress,
                    target=target,
                ),
            )
        console.print(f"replayed {result.replayed} into {target}, {result.remaining} remaining")
