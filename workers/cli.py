"""`fila worker …` and `fila dlq …`."""

from __future__ import annotations

import importlib

import typer


def register(app: typer.Typer) -> None:
    worker = typer.Typer(help="Run a worker process (several processes share the load).")
    app.add_typer(worker, name="worker")

    @worker.command("ingest")
    def ingest() -> None:
        """Evolution API events → filter → token bucket → S3 → global.messages."""
        importlib.import_module("workers.ingest").main()

    @worker.command("delivery")
    def delivery() -> None:
        """global.messages → main webhook; monitoring events → monitoring webhook."""
        importlib.import_module("workers.delivery").main()

    try:
        dlq_commands = importlib.import_module("workers.dlq_commands")
    except ModuleNotFoundError:
        return
    dlq_commands.register(app)
