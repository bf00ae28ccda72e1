"""Client CPU per POST with N in flight: httpx's own pool, `fila.httptransport`'s transport on
a stock httpx client, httpx's client without a cookie jar (`httptransport.client`, what the
workers used before), and the workers' client (`fila.httpcalls`: aiohttp without httpx).

    .venv/bin/python scripts/http_pool_cost.py --in-flight 32 --rounds 3

A minimal HTTP/1.1 server runs in its own process (uvloop) and answers `{}` at once; the
client keeps N POSTs in flight for a few seconds per variant, variants alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import sys
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fila import httpcalls, httptransport

BODY = b'{"event":"audio"}' * 40


def serve(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


VARIANTS = ("httpcore", "aiohttp", "nojar", "workers")


async def measure(variant: str, in_flight: int, seconds: float, url: str) -> tuple[int, float]:
    limits = httpx.Limits(max_connections=max(in_flight * 2, 20))
    if variant == "workers":
        async with httpcalls.Calls(limits, httpx.Timeout(30.0)) as calls:
            return await drive(lambda: calls.stream("POST", url, content=BODY), in_flight, seconds)
    target: str | httpx.URL = url
    client: httpx.AsyncClient
    if variant == "nojar":
        client = httptransport.client(limits, httpx.Timeout(30.0))
        target = httpx.URL(url)
    elif variant == "aiohttp":
        client = httpx.AsyncClient(transport=httptransport.transport(limits))
    else:
        client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(limits=limits))
    async with client:
        return await drive(lambda: client.stream("POST", target, content=BODY), in_flight, seconds)


async def drive(
    post: Callable[[], AbstractAsyncContextManager[Any]], in_flight: int, seconds: float
) -> tuple[int, float]:
    """`in_flight` loops of POSTs, each answer read to its end, for `seconds`: (done, CPU s)."""
    done = 0
    stop = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < stop:
            async with post() as answer:
                async for _ in answer.aiter_bytes():
                    pass
            done += 1

    started = time.process_time()
    await asyncio.gather(*(loop() for _ in range(in_flight)))
    return done, time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = multiprocessing.Process(target=serve, args=(port,), daemon=True)
    server.start()
    time.sleep(1.0)
    url = f"http://127.0.0.1:{port}/hook"
    try:
        for round_ in range(1, args.rounds + 1):
            for name in VARIANTS:
                done, cpu = uvloop.run(measure(name, args.in_flight, args.seconds, url))
                print(
                    f"round {round_}  {name:8}  in flight {args.in_flight:3}  "
                    f"{done / args.seconds:7.0f} POST/s  {cpu / done * 1e6:6.0f} µs CPU a POST"
                )
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
