"""Embedded RabbitMQ, Redis, PostgreSQL and S3 (moto) as plain processes on loopback.

Each service owns a data directory under `settings.data_dir` and ports of its own, so it never
collides with a system service. A service whose URL in the settings points elsewhere is
external: it is checked, never started or stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fila.settings import Settings

REDIS_PORT = 36379
POSTGRES_PORT = 35432
AMQP_PORT = 35672
MANAGEMENT_PORT = 35673
ERL_DIST_PORT = 35674
EPMD_PORT = 35669
S3_PORT = 39000

APT_PACKAGES = {
    "redis": ("redis-server", "/usr/bin/redis-server"),
    "rabbitmq": ("rabbitmq-server", "/usr/lib/rabbitmq/bin/rabbitmq-server"),
    "postgres": ("postgresql", "/usr/lib/postgresql"),
}


class ServiceError(RuntimeError):
    """A service could not be installed, started or reached; the message says which."""


@dataclass
class Status:
    name: str
    url: str
    embedded: bool
    running: bool
    answering: bool
    detail: str = ""


def _is_local(url: str, port: int) -> bool:
    parts = urlsplit(url)
    return parts.hostname in ("127.0.0.1", "localhost") and parts.port == port


class Service:
    """One embedded service: how to start it, and how to tell that it answers."""

    name = ""
    port = 0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = Path(settings.data_dir).resolve()
        self.dir = self.root / self.name
        self.pidfile = self.root / "run" / f"{self.name}.pid"
        self.logfile = self.root / "log" / f"{self.name}.log"

    @property
    def url(self) -> str:
        raise NotImplementedError

    @property
    def embedded(self) -> bool:
        return _is_local(self.url, self.port)

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def prepare(self) -> None:
        """First-run setup (data directory, config files)."""
        self.dir.mkdir(parents=True, exist_ok=True)

    def after_start(self) -> None:
        """Work once the service answers (create database, bucket...)."""

    async def ping(self) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------------- process handling
    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().split()[2] == "Z":
            return None
        return pid

    def start(self) -> None:
        self.prepare()
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        _spawn(self.command(), self.dir, self.logfile, self.pidfile, self.env())

    def stop(self, timeout: float = 30.0) -> bool:
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        _stop_group(pid, lambda: self.pid() is None, timeout, 0.1)
        _reap()
        self.pidfile.unlink(missing_ok=True)
        self.after_stop()
        return True

    def after_stop(self) -> None:
        """Clean-up of helpers the service spawned outside its process group."""

    async def answering(self) -> tuple[bool, str]:
        try:
            await asyncio.wait_for(self.ping(), timeout=5)
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        return True, ""


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while True:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _spawn(
    argv: list[str], cwd: Path, log: Path, pidfile: Path, env: dict[str, str] | None = None
) -> None:
    """Start `argv` in a session of its own (its output appended to `log`); its pid in `pidfile`."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(cwd),
            start_new_session=True,
        )
    pidfile.write_text(str(proc.pid))


def _wait_until(gone: Callable[[], bool], seconds: float, poll: float) -> bool:
    """Reap children and poll `gone()` for up to `seconds`; its last answer."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _reap()
        if gone():
            return True
        time.sleep(poll)
    return gone()


def _stop_group(pid: int, gone: Callable[[], bool], seconds: float, poll: float) -> bool:
    """SIGTERM to the process group `pid` leads, SIGKILL when not `gone()` within `seconds`;
    True when SIGTERM was enough."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    if _wait_until(gone, seconds, poll):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return False


class LocalNodes:
    """Servers on loopback ports that this process started, each in `root`/<port> with its
    pid file (`pidname`) and log (`logname`): only processes named by a pid file are signalled."""

    pidname = "redis.pid"
    logname = "redis.log"

    def __init__(self, root: Path, ports: tuple[int, ...]) -> None:
        self.root = root
        self.ports = ports

    @property
    def nodes(self) -> str:
        """`FILA_*_NODES`: the nodes after the first (which the URL names)."""
        return ",".join(f"127.0.0.1:{p}" for p in self.ports[1:])

    def _dir(self, port: int) -> Path:
        return self.root / str(port)

    def _pidfile(self, port: int) -> Path:
        return self._dir(port) / self.pidname

    def _log(self, port: int, lines: int = 5) -> str:
        return _tail(self._dir(port) / self.logname, lines)

    def pid(self, port: int) -> int | None:
        """The node's process when it runs (started by us: its pid file names it)."""
        try:
            pid = int(self._pidfile(port).read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().split()[2] == "Z":
            return None
        return pid

    def _gone(self, port: int) -> bool:
        return self.pid(port) is None

    def kill(self, port: int, sig: int = signal.SIGKILL) -> None:
        """Signal one node (a fault for tests: kill -9 of a master)."""
        pid = self.pid(port)
        if pid is not None:
            os.kill(pid, sig)

    def _spawn(self, port: int, argv: list[str], env: dict[str, str] | None = None) -> None:
        _spawn(argv, self._dir(port), self._dir(port) / self.logname, self._pidfile(port), env)

    def _stop(self, ports: tuple[int, ...], wipe: bool) -> list[int]:
        """Stop the nodes of `ports` that run, in that order (SIGKILL after 10 s), then remove
        their data when `wipe`; the ports stopped."""
        stopped = []
        for port in ports:
            pid = self.pid(port)
            if pid is None:
                continue
            _stop_group(pid, partial(self._gone, port), 10, 0.05)
            _reap()
            stopped.append(port)
        if wipe:
            shutil.rmtree(self.root, ignore_errors=True)
        return stopped


class Redis(Service):
    name = "redis"
    port = REDIS_PORT

    @property
    def url(self) -> str:
        return self.settings.redis_url

    def command(self) -> list[str]:
        return [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--save", "",
            "--protected-mode", "no",
        ]  # fmt: skip

    async def ping(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(self.url)
        try:
            await client.ping()
        finally:
            await client.aclose()


def _postgres_bin() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version_key)
    if not candidates:
        raise ServiceError("postgres: no server binary under /usr/lib/postgresql (apt package)")
    return Path(candidates[-1]).parent


def _version_key(path: str) -> int:
    try:
        return int(path.split("/")[4])
    except (IndexError, ValueError):
        return 0


class Postgres(Service):
    name = "postgres"
    port = POSTGRES_PORT

    @property
    def url(self) -> str:
        return self.settings.database_url

    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def prepare(self) -> None:
        data = self.dir / "data"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "sock").mkdir(exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in (self.dir, self.dir / "sock"):
                os.chown(path, user.pw_uid, user.pw_gid)
        if (data / "PG_VERSION").exists():
            return
        user_name = urlsplit(self.url).username or "fila"
        result = subprocess.run(
            self._as_owner(
                [
                    str(_postgres_bin() / "initdb"),
                    "-D", str(data),
                    "-U", user_name,
                    "-A", "trust",
                    "-E", "UTF8",
                    "--no-instructions",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ServiceError(f"postgres: initdb failed: {result.stderr.strip()[:300]}")

    def command(self) -> list[str]:
        return self._as_owner(
            [
                str(_postgres_bin() / "postgres"),
                "-D", str(self.dir / "data"),
                "-p", str(self.port),
                "-k", str(self.dir / "sock"),
                "-c", "listen_addresses=127.0.0.1",
                "-c", "max_connections=300",
                "-c", "shared_buffers=128MB",
            ]
        )  # fmt: skip

    def after_start(self) -> None:
        asyncio.run(self._create_database())

    async def _create_database(self) -> None:
        import asyncpg

        name = urlsplit(self.url).path.lstrip("/") or "fila"
        conn = await asyncpg.connect(_admin_dsn(self.url))
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def ping(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(_admin_dsn(self.url))
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()


def _admin_dsn(url: str) -> str:
    """The same server and user, database `postgres` (which always exists)."""
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


class RabbitMQ(Service):
    name = "rabbitmq"
    port = AMQP_PORT

    @property
    def url(self) -> str:
        return self.settings.rabbitmq_url

    def prepare(self) -> None:
        super().prepare()
        (self.dir / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"listeners.tcp.default = 127.0.0.1:{AMQP_PORT}",
                    "management.tcp.ip = 127.0.0.1",
                    f"management.tcp.port = {MANAGEMENT_PORT}",
                    "loopback_users = none",
                    "log.console = true",
                    "log.console.level = warning",
                    "log.file = false",
                    "vm_memory_high_watermark.relative = 0.3",
                    "disk_free_limit.absolute = 200MB",
                    "",
                ]
            )
        )
        (self.dir / "enabled_plugins").write_text("[rabbitmq_management].\n")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            HOME=str(self.dir),
            RABBITMQ_NODENAME="fila@localhost",
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(AMQP_PORT),
            RABBITMQ_DIST_PORT=str(ERL_DIST_PORT),
            # Erlang distribution listens on every interface unless told, guarded by the cookie
            # alone: keep it (and epmd, below) on loopback like every other port.
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            ERL_EPMD_PORT=str(EPMD_PORT),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.dir / "log"),
            RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(self.dir / "rabbit.pid"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.dir / "advanced.config"),
        )
        return env

    def command(self) -> list[str]:
        return ["/usr/lib/rabbitmq/bin/rabbitmq-server"]

    def after_stop(self) -> None:
        epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
        if os.path.exists(epmd):
            subprocess.run(
                [epmd, "-port", str(EPMD_PORT), "-kill"],
                capture_output=True,
                check=False,
                env={**os.environ, "ERL_EPMD_PORT": str(EPMD_PORT)},
            )

    async def ping(self) -> None:
        import aio_pika
        import httpx

        logging.getLogger("aio_pika").setLevel(logging.CRITICAL)
        logging.getLogger("aiormq").setLevel(logging.CRITICAL)
        conn = await aio_pika.connect(self.url, timeout=3)
        await conn.close()
        mgmt = urlsplit(self.settings.rabbitmq_management_url)
        if mgmt.hostname:
            async with httpx.AsyncClient(timeout=3) as client:
                base = f"{mgmt.scheme}://{mgmt.hostname}:{mgmt.port}"
                auth = (mgmt.username or "guest", mgmt.password or "guest")
                resp = await client.get(f"{base}/api/overview", auth=auth)
                resp.raise_for_status()


class S3(Service):
    name = "s3"
    port = S3_PORT

    @property
    def url(self) -> str:
        return self.settings.s3_endpoint_url or "https://s3.amazonaws.com"

    def command(self) -> list[str]:
        # moto's S3 with keep-alive (fila.dev.s3server), not its development server
        return [sys.executable, "-m", "fila.dev.s3server", "-H", "127.0.0.1", "-p", str(self.port)]

    def after_start(self) -> None:
        asyncio.run(ensure_bucket(self.settings))

    async def ping(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=3) as client:
            resp = await client.get(self.url)
            if resp.status_code >= 500:
                raise ServiceError(f"s3 answered {resp.status_code}")


def s3_client(settings: Settings) -> Any:
    """An aioboto3 S3 client (async context manager) for the configured endpoint and keys."""
    from fila import s3

    return s3.client(settings)


async def ensure_bucket(settings: Settings) -> None:
    """Create the audio bucket if it does not exist (idempotent)."""
    from botocore.exceptions import ClientError

    async with s3_client(settings) as s3:
        try:
            await s3.head_bucket(Bucket=settings.s3_bucket)
        except ClientError:
            await s3.create_bucket(Bucket=settings.s3_bucket)


async def drop_bucket(settings: Settings) -> None:
    """Delete the bucket and everything in it (namespaces made for a test or a bench run)."""
    async with s3_client(settings) as s3:
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=settings.s3_bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                await s3.delete_objects(Bucket=settings.s3_bucket, Delete={"Objects": keys})
        await s3.delete_bucket(Bucket=settings.s3_bucket)


SERVICES: tuple[type[Service], ...] = (Redis, Postgres, RabbitMQ, S3)


def services(settings: Settings, names: list[str] | None = None) -> list[Service]:
    chosen = [cls(settings) for cls in SERVICES]
    if names:
        unknown = set(names) - {s.name for s in chosen}
        if unknown:
            raise ServiceError(f"unknown service(s): {', '.join(sorted(unknown))}")
        chosen = [s for s in chosen if s.name in names]
    return chosen


def ensure_packages(report: Callable[[str], None] = print) -> None:
    """apt-get install the Debian packages of missing servers (root only)."""
    missing = [pkg for pkg, path in APT_PACKAGES.values() if not os.path.exists(path)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise ServiceError(f"missing Debian packages {' '.join(missing)}; install them as root")
    apt_install(missing, report)


def apt_install(packages: list[str], report: Callable[[str], None]) -> None:
    """apt-get update, then install `packages` without their recommendations (as root)."""
    report(f"installing {' '.join(packages)} (apt-get)…")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceError(f"{' '.join(argv[:2])} failed: {result.stderr.strip()[-300:]}")


async def _wait(service: Service, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    detail = ""
    while time.monotonic() < deadline:
        ok, detail = await service.answering()
        if ok:
            return
        if service.embedded and service.pid() is None:
            tail = _tail(service.logfile)
            raise ServiceError(f"{service.name} exited during start-up: {tail}")
        await asyncio.sleep(0.3)
    raise ServiceError(f"{service.name} did not answer within {timeout:.0f}s: {detail}")


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def up(
    settings: Settings, names: list[str] | None = None, report: Callable[[str], None] = print
) -> list[Status]:
    """Start what is embedded and not running, wait until every service answers."""
    chosen = services(settings, names)
    if any(s.embedded and s.pid() is None for s in chosen):
        ensure_packages(report)
    started: list[Service] = []
    for service in chosen:
        if not service.embedded or service.pid() is not None:
            continue
        if _port_open(service.port):
            raise ServiceError(
                f"{service.name}: port {service.port} is taken by a process Fila did not start"
            )
        report(f"starting {service.name} on 127.0.0.1:{service.port}…")
        service.start()
        started.append(service)

    async def wait_all() -> None:
        await asyncio.gather(*(_wait(s, 90 if s.name == "rabbitmq" else 30) for s in chosen))

    asyncio.run(wait_all())
    for service in chosen:
        if service.embedded:
            service.after_start()
    return status(settings, names)


def down(settings: Settings, names: list[str] | None = None) -> list[str]:
    """Stop the embedded services Fila started; returns the names stopped."""
    stopped = []
    for service in reversed(services(settings, names)):
        if service.embedded and service.stop():
            stopped.append(service.name)
    return stopped


def status(settings: Settings, names: list[str] | None = None) -> list[Status]:
    chosen = services(settings, names)

    async def probe() -> list[tuple[bool, str]]:
        return list(await asyncio.gather(*(s.answering() for s in chosen)))

    results = asyncio.run(probe())
    return [
        Status(
            name=s.name,
            url=_redact(s.url),
            embedded=s.embedded,
            running=s.pid() is not None if s.embedded else True,
            answering=ok,
            detail=detail,
        )
        for s, (ok, detail) in zip(chosen, results, strict=True)
    ]


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


CLUSTER_PORTS = tuple(range(21400, 21406))
"""The local Redis Cluster's nodes, and their cluster bus on port + 10000: both below Linux's
ephemeral range (32768-60999), where an outgoing connection could hold a port a node needs."""
CLUSTER_NODE_TIMEOUT_MS = 2000
"""How long a master may be silent before its replica takes over (Redis' default is 15 s)."""


class LocalRedisCluster(LocalNodes):
    """3 masters and 3 replicas of Debian's redis-server on loopback, for tests and the demo.

    Created once with `redis-cli --cluster create`; stopping keeps each node's data and
    nodes.conf, so the next `up` brings the same cluster back.
    """

    def __init__(self, settings: Settings, ports: tuple[int, ...] = CLUSTER_PORTS) -> None:
        super().__init__(Path(settings.data_dir).resolve() / f"redis-cluster-{ports[0]}", ports)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def settings(self, base: Settings) -> Settings:
        """`base` pointed at this cluster."""
        return base.replace(redis_mode="cluster", redis_url=self.url, redis_nodes=self.nodes)

    def env(self) -> dict[str, str]:
        """The variables that point a process at this cluster."""
        return {
            "FILA_REDIS_MODE": "cluster",
            "FILA_REDIS_URL": self.url,
            "FILA_REDIS_NODES": self.nodes,
        }

    def _start_node(self, port: int) -> None:
        where = self._dir(port)
        where.mkdir(parents=True, exist_ok=True)
        for taken in (port, port + 10000):
            if _port_open(taken):
                raise ServiceError(
                    f"redis-cluster: port {taken} is taken by a process Fila did not start"
                    + (" (the cluster bus is each node's port + 10000)" if taken != port else "")
                )
        argv = [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--protected-mode", "no",
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(where / "nodes.conf"),
            "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
            "--dir", str(where),
            "--appendonly", "yes",
            "--save", "",
        ]  # fmt: skip
        self._spawn(port, argv)

    def _info(self, port: int) -> dict[str, str]:
        import redis

        client = redis.Redis(port=port, socket_connect_timeout=1, socket_timeout=2)
        try:
            raw = client.cluster("INFO")
        finally:
            client.close()
        if isinstance(raw, dict):
            return {str(k): str(v) for k, v in raw.items()}
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return dict(line.split(":", 1) for line in text.split() if ":" in line)

    def _lost_port_race(self, port: int) -> bool:
        """The node exited because its port was in use when it bound (and is free now)."""
        log = self._log(port, 3)
        return "Address already in use" in log and not _port_open(port)

    def _replication(self, port: int) -> dict[str, Any]:
        import redis

        client = redis.Redis(port=port, socket_connect_timeout=1, socket_timeout=2)
        try:
            return dict(client.info("replication"))
        finally:
            client.close()

    def healthy(self) -> bool:
        """Every node answers and sees a whole cluster of all the nodes, every slot served, and
        every master has a replica in sync: one still on its full sync (a killed node just
        restarted) cannot take over, so its master killed then would stay down for good."""
        try:
            infos = [self._info(p) for p in self.ports if self.pid(p) is not None]
            if len(infos) != len(self.ports) or not all(
                i.get("cluster_state") == "ok"
                and i.get("cluster_known_nodes") == str(len(self.ports))
                for i in infos
            ):
                return False
            roles = [self._replication(p) for p in self.ports]
        except Exception:
            return False
        return all(
            int(r.get("connected_slaves", 0)) >= 1
            if r.get("role") == "master"
            else r.get("master_link_status") == "up"
            for r in roles
        )

    def up(self, report: Callable[[str], None] = print, timeout: float = 60.0) -> None:
        """Start the nodes not running, create the cluster once, wait until it serves."""
        ensure_packages(report)
        for port in self.ports:
            if self.pid(port) is None:
                self._start_node(port)
        deadline = time.monotonic() + timeout
        restarts = 3
        while True:
            try:
                infos = [self._info(p) for p in self.ports]
                break
            except Exception as exc:
                dead = [p for p in self.ports if self.pid(p) is None]
                if dead and restarts and all(self._lost_port_race(p) for p in dead):
                    restarts -= 1  # an outgoing connection held the port (ephemeral range)
                    for port in dead:
                        self._start_node(port)
                    continue
                if dead or time.monotonic() > deadline:
                    tail = self._log((dead or self.ports)[0])
                    raise ServiceError(
                        f"redis-cluster: node did not start: {exc} | {tail}"
                    ) from None
                time.sleep(0.1)
        if any(i.get("cluster_known_nodes") == "1" for i in infos):
            report(f"creating a Redis Cluster on 127.0.0.1:{self.ports[0]}-{self.ports[-1]}…")
            created = subprocess.run(
                [
                    shutil.which("redis-cli") or "/usr/bin/redis-cli",
                    "--cluster", "create",
                    *(f"127.0.0.1:{p}" for p in self.ports),
                    "--cluster-replicas", "1",
                    "--cluster-yes",
                ],
                capture_output=True, text=True, check=False, timeout=60,
            )  # fmt: skip
            if created.returncode != 0:
                out = " ".join((created.stdout + created.stderr).split())[-300:]
                raise ServiceError(f"redis-cluster: --cluster create failed: {out}")
        while not self.healthy():
            if time.monotonic() > deadline:
                raise ServiceError(f"redis-cluster: not whole within {timeout:.0f}s")
            time.sleep(0.2)

    def down(self, wipe: bool = False) -> list[int]:
        """Stop the nodes we started (data kept unless `wipe`); returns their ports."""
        return self._stop(self.ports, wipe)
