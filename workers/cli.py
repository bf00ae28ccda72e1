"""`fila worker …` and `fila dlq …`."""

from __future__ import annotations

import typer

from fila.models import WorkerRole
from workers import dlq_commands


def _secrets_or_exit(secret: str) -> None:
    """On a network, the documented default of the secret this worker uses ends its start."""
    from fila.cli import settings_or_exit
    from fila.exposure import DefaultSecret, refuse_defaults

    try:
        refuse_defaults(settings_or_exit(), listens=False, secrets=(secret,))
    except DefaultSecret as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    worker = typer.Typer(help="Run a worker process (several processes share the load).")
    app.add_typer(worker, name="worker")

    @worker.command("ingest")
    def ingest() -> None:
        """Evolution API events → filter → token bucket → S3 → global.messages."""
        _secrets_or_exit("evolution_api_key")
        from workers import ingest as worker

        worker.main()

    @worker.command("delivery")
    def delivery() -> None:
        """global.messages → main webhook; monitoring events → monitoring webhook."""
        _secrets_or_exit("webhook_secret")
        from workers import delivery as worker

        worker.main()

    @worker.command("alive")
    def alive(role: str = typer.Argument(..., help="ingest or delivery")) -> None:
        """Exit 0 if a ROLE worker on this host heartbeats (compose health check), else 1."""
        import asyncio

        from fila.settings import get_settings
        from workers.fleet import alive_here

        roles: dict[str, WorkerRole] = {"ingest": "ingest", "delivery": "delivery"}
        if role not in roles:
            raise typer.BadParameter("ingest or delivery", param_hint="ROLE")
        ok = asyncio.run(asyncio.wait_for(alive_here(get_settings(), roles[role]), 10))
        typer.echo(f"{role} worker {'alive' if ok else 'not heartbeating'} on this host")
        raise typer.Exit(0 if ok else 1)

    dlq_commands.register(app)
