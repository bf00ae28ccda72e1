"""Benchmark of the operator TUI: frame time of a refresh, CPU share at 1 Hz, by fleet size.

Not a test: prints figures. Injected data by default, handed to the screen as the control
plane serves it (the page the screen asks for, sorted and sliced beforehand); with
`--server URL` the app polls a real control plane instead, as `fila tui` does.

    .venv/bin/python scripts/bench_tui.py [--rows 500,5000] [--seconds 20] [--server URL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from fila import fleetquery
from fila.fleetquery import InstancesQuery
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


def served(view: InstancesView, query: InstancesQuery) -> InstancesView:
    """What `GET /fleet/instances` answers for `query` over the fleet `view`."""
    rows, matched = fleetquery.page(view.instances, query)
    return fleetquery.answer(rows, matched, len(view.instances), view.generatedAt, query)


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
        query = app.data.instancesQuery
        pages = [served(changed(rows, tick, share), query) for tick in range(1, count + 1)]
        for page in pages:
            app.data.instances = page
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
        query = app.data.instancesQuery
        ticks = int(seconds) + 1
        pages: list[InstancesView | None] = [None] * ticks
        if not server:
            pages = [served(demo.instances(rows, t), query) for t in range(ticks)]
        cpu0, wall0 = time.process_time(), time.monotonic()
        for page in pages:
            if time.monotonic() - wall0 >= seconds:
                break
            if page is not None:
                app.data.instances = page
                app.render_page()
            await asyncio.sleep(1.0)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        shown = app.screen_stack[0]
        assert isinstance(shown, InstancesScreen)
        return 100 * cpu / wall, len(shown.shown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="500,5000", help="Fleet sizes, comma-separated.")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--server", default=None, help="Poll this control plane instead.")
    args = parser.parse_args()
    for rows in (int(n) for n in args.rows.split(",")):
        for share in (1.0, 0.1):
            for size in ((80, 24), (160, 48)):
                cpu, wall = asyncio.run(frames(rows, args.frames, size, share))
                print(
                    f"frame, {rows} instances, {share:.0%} changed, {size[0]}x{size[1]}: "
                    f"cpu {summary(cpu)}; wall {summary(wall)}  (target < 50 ms)"
                )
        pct, shown = asyncio.run(cpu_share(rows, args.seconds, args.server))
        source = args.server or "injected data"
        print(
            f"cpu at 1 Hz ({rows} instances, {shown} rows shown, {source}, {args.seconds:g} s):"
            f" {pct:.1f} % of a core  (target < 10 %)"
        )


if __name__ == "__main__":
    main()
