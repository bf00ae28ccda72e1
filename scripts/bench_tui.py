"""Benchmark of the operator TUI: frame time of a 500-row refresh, CPU share at 1 Hz.

Not a test: prints figures. Injected data by default (every row changes every tick); with
`--server URL` the app polls a real control plane instead, as `fila tui` does.

    .venv/bin/python scripts/bench_tui.py [--rows 500] [--seconds 20] [--server URL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from fila.settings import get_settings
from fila.views import InstancesView
from tui import demo
from tui.app import FilaApp
from tui.screens.instances import InstancesScreen


def changed(rows: int, tick: int, share: float) -> InstancesView:
    """The fleet at `tick` where only the first `share` of the instances got new events."""
    moving = int(rows * share)
    view = demo.instances(rows, tick)
    still = demo.instances(rows, 0).instances
    view.instances[moving:] = still[moving:]
    return view


async def frames(
    rows: int, count: int, size: tuple[int, int], share: float
) -> tuple[list[float], list[float]]:
    """Per refresh: CPU ms and wall ms to apply it and repaint (until the app is idle again).

    CPU time is the app's own work (the figure to judge, immune to a busy machine); wall
    time also contains the idle polling that detects the end of the frame.
    """
    app = FilaApp(get_settings(), fixed=demo.fleet(rows), start="instances")
    cpu: list[float] = []
    wall: list[float] = []
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        screen = app.screen_stack[0]
        assert isinstance(screen, InstancesScreen)
        for tick in range(1, count + 1):
            app.data.instances = changed(rows, tick, share)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            screen.refresh_from(app.data)
            await pilot.pause()
            cpu.append((time.process_time() - cpu0) * 1000)
            wall.append((time.perf_counter() - wall0) * 1000)
    return cpu, wall


def summary(ms: list[float]) -> str:
    ordered = sorted(ms)
    p95 = ordered[max(0, int(0.95 * len(ordered)) - 1)]
    return f"median {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms, max {ordered[-1]:.1f} ms"


async def cpu_share(rows: int, seconds: float, server: str | None) -> tuple[float, int]:
    """Share of one core used by the app refreshing the instances screen once a second."""
    settings = get_settings()
    if server:
        app = FilaApp(settings.replace(server_url=server), poll_seconds=1.0, start="instances")
    else:
        app = FilaApp(settings, fixed=demo.fleet(rows), start="instances")
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause(1.0)
        cpu0, wall0 = time.process_time(), time.monotonic()
        tick = 0
        while time.monotonic() - wall0 < seconds:
            if not server:
                tick += 1
                app.data.instances = demo.instances(rows, tick)
                app.render_page()
            await asyncio.sleep(1.0)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        shown = app.screen_stack[0]
        assert isinstance(shown, InstancesScreen)
        return 100 * cpu / wall, len(shown.shown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--server", default=None, help="Poll this control plane instead.")
    args = parser.parse_args()
    for share in (1.0, 0.1):
        for size in ((80, 24), (160, 48)):
            cpu, wall = asyncio.run(frames(args.rows, args.frames, size, share))
            print(
                f"frame, {args.rows} rows, {share:.0%} changed, {size[0]}x{size[1]}: "
                f"cpu {summary(cpu)}; wall {summary(wall)}  (target < 50 ms)"
            )
    share, shown = asyncio.run(cpu_share(args.rows, args.seconds, args.server))
    source = args.server or "injected data"
    print(
        f"cpu at 1 Hz ({shown} rows, {source}, {args.seconds:g} s): {share:.1f} % of a core"
        "  (target < 20 %)"
    )


if __name__ == "__main__":
    main()
