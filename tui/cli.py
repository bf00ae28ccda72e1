"""`fila tui`: the operator console."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("tui")
    def tui(
        screen: str = typer.Option("overview", help="Screen to open first."),
        server: str = typer.Option("", help="Control plane URL (default FILA_SERVER_URL)."),
        demo: bool = typer.Option(False, "--demo", help="A made-up fleet, no control plane."),
        headless: bool = typer.Option(
            False, "--headless", help="No terminal: poll and render unseen (soak runs)."
        ),
    ) -> None:
        """Watch the fleet live and edit thresholds (talks to the control plane only)."""
        from fila.cli import settings_or_exit
        from tui import demo as sample
        from tui.app import SCREENS, FilaApp

        settings = settings_or_exit()
        if server:
            settings = settings.replace(server_url=server)
        if screen not in SCREENS:
            typer.echo(f"error: --screen must be one of {', '.join(SCREENS)}", err=True)
            raise typer.Exit(2)
        FilaApp(settings, start=screen, fixed=sample.fleet() if demo else None).run(
            headless=headless
        )

    from tui import historycli

    historycli.register(app)
