"""`fila services …`: start, stop and check the embedded servers and local clusters (dev, tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import typer
from rich.console import Console
from rich.table import Table

from fila.cli import settings_or_exit
from fila.dev import services as svc
from fila.dev.rabbitcluster import LocalRabbitCluster

services_app = typer.Typer(help="Embedded RabbitMQ, Redis, PostgreSQL and S3 on loopback.")
console = Console()


def register(app: typer.Typer) -> None:
    app.add_typer(services_app, name="services")


class _Setup(Protocol):
    """A local cluster or Sentinel setup, as its `up`, `down` and `status` commands see it."""

    ports: tuple[int, ...]

    def up(self, report: Callable[[str], None] = ..., timeout: float = ...) -> None: ...
    def env(self) -> dict[str, str]: ...
    def pid(self, port: int) -> int | None: ...
    def healthy(self) -> bool: ...


def _start(setup: _Setup, summary: Callable[[], str]) -> None:
    """Bring `setup` up, then print `summary()` and the variables that point a process at it."""
    try:
        setup.up(report=lambda m: console.print(m))
    except svc.ServiceError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(summary(), soft_wrap=True)
    for name, value in setup.env().items():
        print(f"{name}={value}")


def _print_stopped(stopped: list[int] | list[str]) -> None:
    console.print(f"stopped: {', '.join(map(str, stopped)) if stopped else 'nothing was running'}")


def _check(setup: _Setup, line: Callable[[str, bool], str]) -> None:
    """Print `line("<running>/<all>", healthy)`; exit 1 unless `setup` is healthy."""
    running = [p for p in setup.ports if setup.pid(p) is not None]
    healthy = setup.healthy()
    console.print(line(f"{len(running)}/{len(setup.ports)}", healthy))
    if not healthy:
        raise typer.Exit(1)


def _print_status(rows: list[svc.Status]) -> None:
    table = Table("service", "url", "mode", "running", "answering")
    for row in rows:
        table.add_row(
            row.name,
            row.url,
            "embedded" if row.embedded else "external",
            "yes" if row.running else "no",
            "[green]yes[/green]" if row.answering else f"[red]no[/red] {row.detail}",
        )
    console.print(table)


@services_app.command("up")
def services_up(names: list[str] = typer.Argument(None, help="Only these services.")) -> None:
    """Install what is missing, start the embedded services, wait until each answers."""
    settings = settings_or_exit()
    try:
        rows = svc.up(settings, names or None, report=lambda m: console.print(m))
    except svc.ServiceError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    _print_status(rows)
    if not all(r.answering for r in rows):
        raise typer.Exit(1)


@services_app.command("down")
def services_down(names: list[str] = typer.Argument(None, help="Only these services.")) -> None:
    """Stop only the embedded services Fila started."""
    _print_stopped(svc.down(settings_or_exit(), names or None))


@services_app.command("restart")
def services_restart(names: list[str] = typer.Argument(None, help="Only these services.")) -> None:
    """Stop then start embedded services (data kept)."""
    settings = settings_or_exit()
    svc.down(settings, names or None)
    _print_status(svc.up(settings, names or None, report=lambda m: console.print(m)))


@services_app.command("status")
def services_status() -> None:
    """Show whether each service runs and answers."""
    rows = svc.status(settings_or_exit())
    _print_status(rows)
    if not all(r.answering for r in rows):
        raise typer.Exit(1)


cluster_app = typer.Typer(help="A local Redis Cluster (3 masters + 3 replicas) on loopback.")
services_app.add_typer(cluster_app, name="redis-cluster")


@cluster_app.command("up")
def cluster_up() -> None:
    """Start (and create once) the local Redis Cluster; print the settings that use it."""
    cluster = svc.LocalRedisCluster(settings_or_exit())
    _start(
        cluster,
        lambda: f"Redis Cluster answering on 127.0.0.1:{cluster.ports[0]}-{cluster.ports[-1]}",
    )


@cluster_app.command("down")
def cluster_down(
    wipe: bool = typer.Option(False, "--wipe", help="Also delete its data (a new cluster)."),
) -> None:
    """Stop the local Redis Cluster's nodes (only those Fila started)."""
    _print_stopped(svc.LocalRedisCluster(settings_or_exit()).down(wipe=wipe))


@cluster_app.command("status")
def cluster_status() -> None:
    """Whether every node runs and the cluster serves all its slots."""
    _check(svc.LocalRedisCluster(settings_or_exit()), _nodes_line)


def _nodes_line(running: str, ok: bool) -> str:
    return f"nodes running: {running}; cluster ok: {ok}"


sentinel_app = typer.Typer(
    help="A local Sentinel setup (master, replica, 3 sentinels) on loopback."
)
services_app.add_typer(sentinel_app, name="redis-sentinel")


@sentinel_app.command("up")
def sentinel_up() -> None:
    """Start the local master, replica and sentinels; print the settings that use them."""
    from fila.dev.redissentinel import LocalRedisSentinel

    setup = LocalRedisSentinel(settings_or_exit())
    _start(setup, lambda: f"Redis master {setup.master()}, sentinels {setup.nodes}")


@sentinel_app.command("down")
def sentinel_down(
    wipe: bool = typer.Option(False, "--wipe", help="Also delete its data and configuration."),
) -> None:
    """Stop the local sentinels, master and replica (only those Fila started)."""
    from fila.dev.redissentinel import LocalRedisSentinel

    _print_stopped(LocalRedisSentinel(settings_or_exit()).down(wipe=wipe))


@sentinel_app.command("status")
def sentinel_status() -> None:
    """Whether every process runs and the sentinels agree on a master with its replica."""
    from fila.dev.redissentinel import LocalRedisSentinel

    setup = LocalRedisSentinel(settings_or_exit())
    _check(
        setup,
        lambda running, ok: f"running: {running}; master {setup.master()}; ok: {ok}",
    )


rabbit_app = typer.Typer(help="A local RabbitMQ cluster (3 nodes, quorum queues) on loopback.")
services_app.add_typer(rabbit_app, name="rabbitmq-cluster")


@rabbit_app.command("up")
def rabbit_cluster_up() -> None:
    """Start (and join once) the local RabbitMQ cluster; print the settings that use it."""
    cluster = LocalRabbitCluster(settings_or_exit())
    _start(
        cluster,
        lambda: f"RabbitMQ cluster answering on 127.0.0.1:{','.join(map(str, cluster.ports))}",
    )


@rabbit_app.command("down")
def rabbit_cluster_down(
    wipe: bool = typer.Option(False, "--wipe", help="Also delete its data (a new cluster)."),
) -> None:
    """Stop the local RabbitMQ cluster's nodes (only those Fila started)."""
    _print_stopped(LocalRabbitCluster(settings_or_exit()).down(wipe=wipe))


@rabbit_app.command("status")
def rabbit_cluster_status() -> None:
    """Whether every node runs and sees the others."""
    _check(LocalRabbitCluster(settings_or_exit()), _nodes_line)
