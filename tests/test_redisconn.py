"""Every process's Redis connections notice a peer that vanished without closing."""

from __future__ import annotations

import socket

from fila import redisconn
from fila.settings import Settings


async def test_connections_carry_tcp_keepalive(settings: Settings) -> None:
    client = redisconn.connect(settings)
    try:
        assert await client.ping()
        connection = await client.connection_pool.get_connection()
        try:
            sock = connection._writer.transport.get_extra_info("socket")  # type: ignore[union-attr]
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
        finally:
            await client.connection_pool.release(connection)
    finally:
        await client.aclose()
