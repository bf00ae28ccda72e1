"""Requests stalled by Nagle's algorithm on the simulator's HTTP server, per client.

    .venv/bin/python scripts/nodelay_stall.py [--seconds 10] [--rate 8] [--proto0]

A 33 KB GET (a voice note's `.enc`) at random times, `--rate` a second, from one asyncio
process to `simulator.httpserver.LoopbackServer`, through httpx's own pool and through
`fila.httptransport`. `--proto0` binds the server's socket as it was bound until b6c1e55
(protocol 0, no TCP_NODELAY: asyncio then leaves Nagle on). Prints p50 / p95 and how many
requests took over 20 ms (a stall is the client's delayed ACK, 40 ms here).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fila.httptransport import transport
from simulator import httpserver
from simulator.httpserver import LoopbackServer, Request, Response

BODY = b"x" * 33_000


def _bind_proto0(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def handle(_: Request) -> Response:
    return Response(body=BODY, content_type="application/octet-stream")


async def measure(
    name: str, client: httpx.AsyncClient, url: str, seconds: float, rate: float
) -> None:
    spent: list[float] = []

    async def one() -> None:
        started = time.perf_counter()
        async with client.stream("GET", url) as response:
            async for _ in response.aiter_bytes():
                pass
        spent.append((time.perf_counter() - started) * 1000)

    tasks = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(random.expovariate(rate))
    await asyncio.gather(*tasks)
    spent.sort()
    slow = sum(1 for ms in spent if ms > 20)
    print(
        f"{name:>9}: {len(spent)} GETs, p50 {spent[len(spent) // 2]:.2f} ms, "
        f"p95 {spent[int(len(spent) * 0.95)]:.2f} ms, over 20 ms: {slow}",
        flush=True,
    )


async def main(seconds: float, rate: float) -> None:
    server = LoopbackServer(handle)
    await server.start()
    url = f"{server.url}/media/x.enc"
    limits = httpx.Limits(max_connections=20)
    try:
        async with httpx.AsyncClient(limits=limits) as client:
            await measure("httpcore", client, url, seconds, rate)
        async with httpx.AsyncClient(transport=transport(limits)) as client:
            await measure("aiohttp", client, url, seconds, rate)
    finally:
        await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=8.0)
    parser.add_argument("--proto0", action="store_true")
    args = parser.parse_args()
    if args.proto0:
        httpserver._bind = _bind_proto0
    asyncio.run(main(args.seconds, args.rate))
