"""`fila config history`: the configuration history as a table, read through the control plane
(so a read-only key is enough, from any host)."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.table import Table

from fila.history import ConfigHistory, instance_target
from fila.settings import Settings
from tui.client import ControlPlaneError, FilaClient, Unreachable
from tui.widgets.historytable import COLUMNS, cells


async def fetch(
    settings: Settings, target: str | None, since: str | None, limit: int
) -> ConfigHistory:
    client = FilaClient(settings)
    try:
        return await client.config_history(target=target, since=since, limit=limit)
    finally:
        await client.aclose()


def register(app: typer.Typer) -> None:
    config = typer.Typer(help="The control plane's configuration.")
    app.add_typer(config, name="config")

    @config.command("history")
    def history(
        target: str = typer.Option(
            "",
            help="fleet, ratelimit, webhook, cleanup, emergency, filters, import, "
            "instance:<name> (that instance, bulk changes and imports included).",
        ),
        instance: str = typer.Option("", help="Shorthand for --target instance:<name>."),
        since: str = typer.Option("", help="Only changes at or after this ISO 8601 time."),
        limit: int = typer.Option(100, help="At most this many (1-1000), newest first."),
        server: str = typer.Option("", help="Control plane URL (default FILA_SERVER_URL)."),
        json_out: bool = typer.Option(False, "--json", help="The raw answer, old/new whole."),
    ) -> None:
        """Who changed what and when (secrets masked), newest first."""
        from fila.cli import settings_or_exit
        from fila.models import encode

        settings = settings_or_exit()
        if server:
            settings = settings.replace(server_url=server)
        chosen = instance_target(instance) if instance else target
        try:
            found = asyncio.run(fetch(settings, chosen or None, since or None, limit))
        except (ControlPlaneError, Unreachable) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        if json_out:
            typer.echo(encode(found).decode())
            return
        table = Table(*COLUMNS, title=f"{found.count} configuration changes")
        for change in found.changes:
            table.add_row(*cells(change))
        Console().print(table)
