"""A uvicorn server hosted inside the caller's event loop, restartable on the same port.

The receiver and the Evolution API stub both need a real socket that tests can take down and
bring back, without uvicorn stealing the host process's signal handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import msgspec
import uvicorn

Headers = dict[str, str]
Handler = Callable[["Request"], Awaitable["Response"]]


class Request(msgspec.Struct, kw_only=True):
    """One HTTP request as the handlers see it: lower-case headers, whole body."""

    method: str
    path: str
    query: str
    headers: Headers
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON, or None when it is not JSON."""
        try:
            return msgspec.json.decode(self.body) if self.body else None
        except msgspec.DecodeError:
            return None


class Response(msgspec.Struct, kw_only=True):
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: Headers = msgspec.field(default_factory=dict)


def json_response(obj: Any, status: int = 200, **headers: str) -> Response:
    return Response(status=status, body=msgspec.json.encode(obj), headers=dict(headers))


class AsgiApp:
    """A minimal ASGI adapter: every HTTP request goes to one async handler."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        request = Request(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            body=b"".join(chunks),
        )
        response = await self.handler(request)
        raw_headers = [(b"content-type", response.content_type.encode())]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in response.headers.items()]
        raw_headers.append((b"content-length", str(len(response.body)).encode()))
        await send(
            {"type": "http.response.start", "status": response.status, "headers": raw_headers}
        )
        await send({"type": "http.response.body", "body": response.body})


class _QuietServer(uvicorn.Server):
    """Leaves SIGINT/SIGTERM to the host process (a demo or a test owns them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP named, and TCP_NODELAY set here (accepted sockets inherit it): asyncio sets
    # it only on sockets whose proto says TCP, so a socket made with proto 0 kept Nagle on, and
    # a response's body waited for the client's delayed ACK of its headers (40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class LoopbackServer:
    """Serve one handler on 127.0.0.1; `stop()` refuses connections, `start()` reopens the port."""

    def __init__(self, handler: Handler, port: int = 0, host: str = "127.0.0.1") -> None:
        self.app = AsgiApp(handler)
        self.host = host
        self.port = port
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            return
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=2,
        )
        server = _QuietServer(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("server stopped before it started")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        server, task = self._server, self._task
        self._server, self._task = None, None
        if server is None or task is None:
            return
        server.should_exit = True
        server.force_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def __aenter__(self) -> LoopbackServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
