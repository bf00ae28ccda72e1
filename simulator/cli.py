"""`fila receiver`, `fila evolution-stub`, `fila simulate`, `fila demo`, `fila bench`."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Coroutine
from typing import Any

import typer

from fila.settings import get_settings


def _run(coro: Coroutine[Any, Any, None]) -> None:
    """Run until done or Ctrl-C / SIGTERM, without a traceback."""
    import signal

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(coro)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())


def register(app: typer.Typer) -> None:
    @app.command("receiver")
    def receiver(
        port: int = typer.Option(38092, "--port", help="Port on 127.0.0.1 (0: any free port)."),
        secret: str = typer.Option(
            "", "--secret", help="Standard Webhooks secret (default: FILA_WEBHOOK_SECRET)."
        ),
    ) -> None:
        """Webhook receiver: records and verifies deliveries (stats at /_receiver/stats)."""
        from simulator.receiver import serve_forever

        _run(serve_forever(secret or get_settings().webhook_secret, port))

    @app.command("evolution-stub")
    def evolution_stub(
        port: int = typer.Option(38091, "--port", help="Port on 127.0.0.1 (0: any free port)."),
        api_key: str = typer.Option(
            "", "--api-key", help="Required apikey header (default: FILA_EVOLUTION_API_KEY)."
        ),
    ) -> None:
        """Stub of Evolution API's reaction, text and media routes, recording every call."""
        from simulator.evolution import serve_forever

        _run(serve_forever(api_key or get_settings().evolution_api_key, port))

    @app.command("simulate")
    def simulate(
        instances: int = typer.Option(500, "--instances", min=1, help="Simulated instances."),
        rate: float = typer.Option(500.0, "--rate", min=0.001, help="Events per minute."),
        duration: float = typer.Option(60.0, "--duration", min=0.1, help="Seconds of traffic."),
        http: str = typer.Option(
            "", "--http", help="POST to this URL (e.g. the control plane's /webhook/evolution)."
        ),
        stub_port: int = typer.Option(
            -1,
            "--stub-port",
            help="Port of the media CDN/Evolution stub (-1: FILA_EVOLUTION_URL's).",
        ),
        linger: float = typer.Option(
            10.0, "--linger", min=0, help="Seconds to keep serving media after the last event."
        ),
        seed: int = typer.Option(0, "--seed", help="Random seed (0: random)."),
        json_out: str = typer.Option("", "--json", help="Write the summary as JSON here."),
        voice_only: bool = typer.Option(
            False, "--voice-only", help="Only voice notes within the default filter (throughput)."
        ),
        max_seconds: int = typer.Option(
            90, "--max-seconds", min=3, help="Longest voice note drawn, in seconds."
        ),
    ) -> None:
        """Publish Evolution API `messages.upsert` events for a fleet of instances."""
        from simulator.runsim import run_simulation

        _run(
            run_simulation(
                get_settings(),
                instances=instances,
                rate=rate,
                duration=duration,
                http_url=http or None,
                stub_port=stub_port,
                linger=linger,
                seed=seed or None,
                json_out=json_out or None,
                voice_only=voice_only,
                max_seconds=max_seconds,
            )
        )

    @app.command("demo")
    def demo(
        headless: bool = typer.Option(
            False, "--headless", help="A live panel instead of the TUI, for --duration seconds."
        ),
        duration: float = typer.Option(
            0.0,
            "--duration",
            min=0,
            help="Seconds of traffic (0: until the TUI exits; 60 headless).",
        ),
        instances: int = typer.Option(500, "--instances", min=1, help="Simulated instances."),
        rate: float = typer.Option(500.0, "--rate", min=0.001, help="Events per minute."),
        receiver_port: int = typer.Option(
            38092, "--receiver-port", min=0, help="Webhook receiver port (0: any free port)."
        ),
    ) -> None:
        """The main job: services, control plane, workers, receiver, simulator and the TUI."""
        from rich.console import Console

        from simulator.demo import Demo, DemoOptions, print_result

        console = Console()
        if not headless and not (sys.stdin.isatty() and sys.stdout.isatty()):
            console.print("no terminal for the TUI: running --headless")
            headless = True
        options = DemoOptions(
            headless=headless,
            duration=duration,
            instances=instances,
            rate=rate,
            receiver_port=receiver_port,
        )
        result: list[object] = []

        async def main() -> None:
            result.append(await Demo(get_settings(), options, console).run())

        try:
            _run(main())
        except (RuntimeError, OSError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
        if not result:
            console.print("demo interrupted")
            return
        from simulator.demo import DemoResult

        outcome = result[0]
        assert isinstance(outcome, DemoResult)
        print_result(console, outcome)
        if outcome.deadChildren or outcome.killed:
            names = ", ".join(outcome.deadChildren + outcome.killed)
            console.print(f"[red]error:[/red] exited early or would not stop: {names}")
            raise typer.Exit(1)

    @app.command("capacity")
    def capacity_plan(
        instances: int = typer.Option(..., "--instances", help="WhatsApp instances to plan for."),
        rate: float = typer.Option(
            ..., "--rate", help="Voice notes a minute per instance (PER_INSTANCE_PER_MIN)."
        ),
        audio_seconds: float | None = typer.Option(
            None, "--audio-seconds", help="Typical voice note length (default: measured size)."
        ),
        retention_days: int = typer.Option(7, "--retention-days", help="S3 retention."),
        bench_json: str = typer.Option(
            "", "--bench", help="bench.json to plan from (default: FILA_DATA_DIR/bench.json)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
    ) -> None:
        """A plan (workers, RabbitMQ, Redis, S3, webhooks) from a bench run's per-note costs."""
        import sys
        from pathlib import Path

        import msgspec
        from rich.console import Console

        from simulator import capacity

        console = Console()
        path = Path(bench_json or Path(get_settings().data_dir) / "bench.json")
        try:
            capacity.check(instances, rate, audio_seconds, retention_days)
            if not path.is_file():
                raise capacity.CapacityError(f"--bench: no file at {path}; run `fila bench` first")
            costs, ceilings = capacity.from_bench(msgspec.json.decode(path.read_bytes()))
            result = capacity.plan(
                costs,
                ceilings,
                instances=instances,
                rate=rate,
                audio_seconds=audio_seconds,
                retention_days=retention_days,
            )
        except capacity.CapacityError as exc:
            sys.stderr.write(f"error: {exc}\n")  # one line, whatever the terminal's width
            raise typer.Exit(2) from None
        if as_json:
            sys.stdout.write(msgspec.json.format(msgspec.json.encode(result)).decode() + "\n")
            return
        capacity.print_plan(console, result, str(path))

    @app.command("bench")
    def bench(
        quick: bool = typer.Option(
            False, "--quick", help="About two minutes instead of about six."
        ),
        workers: int = typer.Option(
            2, "--workers", min=1, help="Ingest and delivery workers each."
        ),
        limiter_procs: int = typer.Option(
            4, "--limiter-procs", min=1, help="Processes sharing the bucket in the limiter test."
        ),
        json_out: str = typer.Option(
            "", "--json", help="Write the figures here (default: FILA_DATA_DIR/bench.json)."
        ),
        soak: float = typer.Option(
            0.0, "--soak", min=0.0, help="Instead: MINUTES at the reference load, RSS sampled."
        ),
        tuis: int = typer.Option(3, "--tuis", min=0, help="Headless TUIs open during --soak."),
        only: str = typer.Option(
            "",
            "--only",
            help="Comma-separated parts to run (hops, reference, endToEnd, fairness,"
            " propagation, limiter, scale); for before/after runs of one change.",
        ),
        cluster: str = typer.Option(
            "",
            "--cluster",
            help="Then the same short parts on a local cluster: redis, rabbitmq or both.",
        ),
    ) -> None:
        """Measure each hop's ceiling, then Fila end to end, limiter, fairness, propagation."""
        from pathlib import Path

        import msgspec
        from rich.console import Console

        from simulator.bench import BenchReport, print_report, run_bench
        from simulator.bench.clusters import CHOICES, print_clusters
        from simulator.bench.run import PARTS

        parts = frozenset(p.strip() for p in only.split(",") if p.strip())
        if parts - PARTS:
            raise typer.BadParameter(
                f"unknown {', '.join(sorted(parts - PARTS))}; one of {', '.join(sorted(PARTS))}",
                param_hint="--only",
            )
        if cluster and (cluster not in CHOICES or soak):
            raise typer.BadParameter(
                f"one of {', '.join(CHOICES)}, without --soak", param_hint="--cluster"
            )
        console = Console()
        settings = get_settings()
        if soak:
            from simulator.soak import SoakReport, print_soak
            from simulator.soak import soak as run_soak

            soaked: list[SoakReport] = []

            async def long_run() -> None:
                soaked.append(await run_soak(settings, soak, tuis, console))

            _run(long_run())
            print_soak(console, soaked[0])
            out = Path(json_out or Path(settings.data_dir) / "soak.json")
            out.write_bytes(msgspec.json.format(msgspec.json.encode(soaked[0])))
            console.print(f"figures written to {out}")
            worst = max(soaked[0].growthPercent.values(), default=0.0)
            if soaked[0].lost or worst >= 5.0:
                raise typer.Exit(1)
            return
        reports: list[BenchReport] = []

        async def main() -> None:
            reports.append(
                await run_bench(
                    settings,
                    quick=quick,
                    workers=workers,
                    limiter_procs=limiter_procs,
                    console=console,
                    cluster=cluster,
                    only=parts,
                )
            )

        try:
            _run(main())
        except (RuntimeError, OSError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
        if not reports:
            console.print("bench interrupted")
            raise typer.Exit(1)
        report = reports[0]
        print_report(console, report)
        if report.clusters:
            print_clusters(console, report.clusters)
        path = Path(json_out or Path(settings.data_dir) / "bench.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(msgspec.json.format(msgspec.json.encode(report)))
        console.print(f"figures written to {path}")
        if report.errors:
            raise typer.Exit(1)
