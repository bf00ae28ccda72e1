"""A local Sentinel setup for tests and the demo: a master, its replica and three sentinels
(Debian's redis-server and redis-sentinel on loopback, in `data_dir`/redis-sentinel-<port>)."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fila.dev.services import LocalNodes, ServiceError, _port_open, apt_install
from fila.settings import Settings

SENTINEL_PORTS = (21440, 21441, 21442, 21443, 21444)
"""Master, replica, then the three sentinels (below the ephemeral range, like the cluster's)."""
DOWN_AFTER_MS = 2000
"""How long a silent master waits for its failover (Sentinel's default is 30 s)."""
QUORUM = 2
SENTINEL_BIN = "/usr/bin/redis-sentinel"


def ensure_sentinel(report: Callable[[str], None] = print) -> None:
    """apt-get install redis-sentinel when its binary is missing (root only)."""
    if os.path.exists(SENTINEL_BIN):
        return
    if os.geteuid() != 0:
        raise ServiceError("missing Debian package redis-sentinel; install it as root")
    apt_install(["redis-sentinel"], report)


class LocalRedisSentinel(LocalNodes):
    """One master, one replica, three sentinels watching it under `redis_sentinel_master`."""

    def __init__(self, settings: Settings, ports: tuple[int, ...] = SENTINEL_PORTS) -> None:
        super().__init__(Path(settings.data_dir).resolve() / f"redis-sentinel-{ports[0]}", ports)
        self.data_ports = ports[:2]
        self.sentinel_ports = ports[2:]
        self.name = settings.redis_sentinel_master

    @property
    def nodes(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)

    def settings(self, base: Settings) -> Settings:
        """`base` pointed at these sentinels (the URL only carries the database number)."""
        return base.replace(
            redis_mode="sentinel",
            redis_url=f"redis://127.0.0.1:{self.data_ports[0]}/0",
            redis_nodes=self.nodes,
        )

    def env(self) -> dict[str, str]:
        return {
            "FILA_REDIS_MODE": "sentinel",
            "FILA_REDIS_URL": f"redis://127.0.0.1:{self.data_ports[0]}/0",
            "FILA_REDIS_NODES": self.nodes,
            "FILA_REDIS_SENTINEL_MASTER": self.name,
        }

    @contextlib.contextmanager
    def _client(self, port: int) -> Iterator[Any]:
        import redis

        client = redis.Redis(port=port, socket_connect_timeout=1, socket_timeout=2)
        try:
            yield client
        finally:
            client.close()

    def master(self) -> tuple[str, int] | None:
        """The master's address as the first answering sentinel names it."""
        for port in self.sentinel_ports:
            try:
                with self._client(port) as client:
                    found = client.sentinel_get_master_addr_by_name(self.name)
            except Exception:
                continue
            if found:
                host = found[0].decode() if isinstance(found[0], bytes) else str(found[0])
                return host, int(found[1])
        return None

    def _start(self, port: int) -> None:
        where = self._dir(port)
        where.mkdir(parents=True, exist_ok=True)
        if _port_open(port):
            raise ServiceError(
                f"redis-sentinel: port {port} is taken by a process Fila did not start"
            )
        common = ["--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "no"]
        if port in self.sentinel_ports:
            conf = where / "sentinel.conf"
            if not conf.exists():  # kept: a sentinel writes the promoted master into it
                conf.write_text(
                    f"sentinel monitor {self.name} 127.0.0.1 {self.data_ports[0]} {QUORUM}\n"
                    f"sentinel down-after-milliseconds {self.name} {DOWN_AFTER_MS}\n"
                    f"sentinel failover-timeout {self.name} 10000\n"
                    f"sentinel parallel-syncs {self.name} 1\n"
                )
            argv = [SENTINEL_BIN, str(conf), *common, "--dir", str(where)]
        else:
            argv = [shutil.which("redis-server") or "/usr/bin/redis-server", *common]
            argv += ["--dir", str(where), "--appendonly", "yes", "--save", ""]
            master = self.master() if self._any_sentinel() else None
            if master is None and port != self.data_ports[0]:
                master = ("127.0.0.1", self.data_ports[0])
            if master is not None and master[1] != port:  # a killed master returns as a replica
                argv += ["--replicaof", master[0], str(master[1])]
        self._spawn(port, argv)

    def _any_sentinel(self) -> bool:
        return any(self.pid(p) is not None for p in self.sentinel_ports)

    def healthy(self) -> bool:
        """Every process runs; the sentinels agree on a master that has its replica in sync and
        know each other (a failover needs the quorum)."""
        if any(self.pid(p) is None for p in self.ports):
            return False
        try:
            master = self.master()
            if master is None:
                return False
            with self._client(master[1]) as client:
                info = client.info("replication")
            if info.get("role") != "master" or int(info.get("connected_slaves", 0)) < 1:
                return False
            for port in self.sentinel_ports:
                with self._client(port) as client:
                    state = client.sentinel_master(self.name)
                    replicas = client.sentinel_slaves(self.name)
                if not any(  # a sentinel learns replicas from the master's INFO, every 10 s
                    not r.get("is_sdown") and r.get("master-link-status") == "ok" for r in replicas
                ):
                    return False
                if not state.get("is_master") or state.get("is_odown") or state.get("is_sdown"):
                    return False
                if int(state.get("num-other-sentinels", 0)) < 2 or state.get("port") != master[1]:
                    return False
        except Exception:
            return False
        return True

    def up(self, report: Callable[[str], None] = print, timeout: float = 60.0) -> None:
        """Start what is not running (data nodes first), then wait until it is whole."""
        ensure_sentinel(report)
        for port in (*self.data_ports, *self.sentinel_ports):
            if self.pid(port) is None:
                self._start(port)
        deadline = time.monotonic() + timeout
        while not self.healthy():
            dead = [p for p in self.ports if self.pid(p) is None]
            if dead or time.monotonic() > deadline:
                tail = self._log((dead or self.ports)[0])
                what = f"port {dead[0]} exited" if dead else f"not whole within {timeout:.0f}s"
                raise ServiceError(f"redis-sentinel: {what} | {tail}")
            time.sleep(0.2)

    def down(self, wipe: bool = False) -> list[int]:
        """Stop the processes we started, sentinels first (data kept unless `wipe`)."""
        return self._stop((*self.sentinel_ports, *self.data_ports), wipe)
