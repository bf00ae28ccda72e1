"""The `fila` command: one entry point that dispatches to each process's own commands."""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.table import Table

from fila.settings import Settings, SettingsError, describe, get_settings

app = typer.Typer(help="Fila: Evolution API voice notes → S3 → global queue → webhooks.")
console = Console()

# Each process package contributes its commands through a `cli` module exposing `register(app)`.
_PLUGINS = ("fila.dev.cli", "workers.cli", "controlplane.cli", "tui.cli", "simulator.cli")


def settings_or_exit() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command("settings")
def show_settings(
    markdown: bool = typer.Option(False, "--markdown", help="Print the README's table."),
) -> None:
    """Every FILA_* variable with its default."""
    if markdown:
        print(settings_markdown())
        return
    table = Table("variable", "default", "meaning")
    for name, default, doc in describe():
        table.add_row(name, default, doc)
    console.print(table)


def settings_markdown() -> str:
    """The settings table as it stands in the README."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, default, doc in describe():
        shown = default if default else "(empty)"
        lines.append(f"| `{name}` | `{shown}` | {doc} |")
    return "\n".join(lines)


def _load_plugins() -> None:
    for module in _PLUGINS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue
            raise
        mod.register(app)


def main() -> None:
    _load_plugins()
    try:
        app()
    except SettingsError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
