"""`fila controlplane` and `fila migrate`."""

from __future__ import annotations

import asyncio

import typer

from fila.settings import Settings


def _settings() -> Settings:
    from fila.cli import settings_or_exit

    return settings_or_exit()


def _migrate_or_exit(settings: Settings) -> None:
    """Apply migrations; on failure one line on stderr and exit status 1."""
    from controlplane.db import migrate as run

    try:
        ok = asyncio.run(run(settings.database_url))
    except OSError as exc:
        typer.echo(f"error: postgresql unreachable: {exc}", err=True)
        raise typer.Exit(1) from None
    if not ok:
        typer.echo("error: migrations failed", err=True)
        raise typer.Exit(1)


def _secrets_or_exit(settings: Settings) -> None:
    """On a network, a documented default secret ends the start at once: one line, status 2."""
    from fila.exposure import DefaultSecret, refuse_defaults

    try:
        refuse_defaults(settings, listens=True)
    except DefaultSecret as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _dependencies_or_exit(settings: Settings) -> None:
    """Wait (bounded) for each dependency and ensure the audio bucket; one that never answers:
    one line, exit status 1."""
    from fila import logging as flog
    from fila import startup

    async def check() -> None:
        await startup.postgres(settings)
        await startup.redis(settings)
        await startup.rabbitmq(settings)
        # The control plane owns the bucket: a fresh MinIO (compose) has none.
        warning = await startup.s3(settings)
        if warning:
            flog.get("controlplane").warning(warning)

    try:
        asyncio.run(check())
    except startup.Unreachable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    @app.command("migrate")
    def migrate() -> None:
        """Apply the control plane's PostgreSQL migrations (idempotent)."""
        _migrate_or_exit(_settings())

    @app.command("controlplane")
    def controlplane(
        migrate_first: bool = typer.Option(
            True, "--migrate/--no-migrate", help="Apply migrations before serving."
        ),
    ) -> None:
        """Serve the REST API (uvicorn + uvloop) on FILA_HTTP_HOST:FILA_HTTP_PORT."""
        from controlplane.server import serve
        from fila import logging as flog

        settings = _settings()
        _secrets_or_exit(settings)
        flog.setup(settings, "controlplane")
        _dependencies_or_exit(settings)
        if migrate_first:
            _migrate_or_exit(settings)
        serve(settings)
