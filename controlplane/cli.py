"""`fila controlplane` and `fila migrate`."""

from __future__ import annotations

import asyncio

import typer

from fila.settings import Settings


def _settings() -> Settings:
    from fila.cli import settings_or_exit

    return settings_or_exit()


def register(app: typer.Typer) -> None:
    @app.command("migrate")
    def migrate() -> None:
        """Apply the control plane's PostgreSQL migrations (idempotent)."""
        from controlplane.db import migrate as run

        settings = _settings()
        try:
            ok = asyncio.run(run(settings.database_url))
        except OSError as exc:
            typer.echo(f"error: postgresql unreachable: {exc}", err=True)
            raise typer.Exit(1) from None
        if not ok:
            typer.echo("error: migrations failed", err=True)
            raise typer.Exit(1)

    @app.command("controlplane")
    def controlplane(
        migrate_first: bool = typer.Option(
            True, "--migrate/--no-migrate", help="Apply migrations before serving."
        ),
    ) -> None:
        """Serve the REST API (uvicorn + uvloop) on FILA_HTTP_HOST:FILA_HTTP_PORT."""
        from controlplane.db import migrate as run
        from controlplane.server import serve
        from fila import logging as flog

        settings = _settings()
        flog.setup(settings, "controlplane")
        if migrate_first:
            try:
                ok = asyncio.run(run(settings.database_url))
            except OSError as exc:
                typer.echo(f"error: postgresql unreachable: {exc}", err=True)
                raise typer.Exit(1) from None
            if not ok:
                typer.echo("error: migrations failed", err=True)
                raise typer.Exit(1)
        serve(settings)
