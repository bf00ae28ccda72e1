"""A local RabbitMQ cluster of Debian's rabbitmq-server nodes on loopback, for tests and the demo.

Each node has its own name, ports and data directory under `settings.data_dir`; all share one
Erlang cookie and one epmd port of their own, and Erlang distribution listens on loopback only.
Only processes this module started (named by its pid files) are ever signalled.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from fila.dev.services import (
    LocalNodes,
    ServiceError,
    _port_open,
    _reap,
    _stop_group,
    _wait_until,
    ensure_packages,
)
from fila.settings import Settings

CLUSTER_PORTS = (21500, 21501, 21502)
"""AMQP ports of `fila services rabbitmq-cluster up`; each node's Erlang distribution listens
on its port + 10 and the nodes' epmd on the first port + 9 (all below the ephemeral range)."""
SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


class LocalRabbitCluster(LocalNodes):
    """N rabbitmq-server nodes joined into one cluster (`join_cluster` once, kept on restart)."""

    pidname = "node.pid"
    logname = "node.log"

    def __init__(self, settings: Settings, ports: tuple[int, ...] = CLUSTER_PORTS) -> None:
        super().__init__(Path(settings.data_dir).resolve() / f"rabbitmq-cluster-{ports[0]}", ports)
        self.epmd_port = ports[0] + 9

    # ---------------------------------------------------------------- names and settings
    def node(self, port: int) -> str:
        return f"fila{port}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.ports[0]}/"

    def settings(self, base: Settings, vhost: str = "") -> Settings:
        """`base` pointed at this cluster (vhost `vhost`, default `/`), with quorum queues."""
        return base.replace(
            rabbitmq_url=self.url + vhost,
            rabbitmq_nodes=self.nodes,
            rabbitmq_queue_type="quorum",
        )

    def env(self) -> dict[str, str]:
        """The variables that point a process at this cluster."""
        return {
            "FILA_RABBITMQ_URL": self.url,
            "FILA_RABBITMQ_NODES": self.nodes,
            "FILA_RABBITMQ_QUEUE_TYPE": "quorum",
        }

    # ---------------------------------------------------------------- processes
    def _erl_env(self) -> dict[str, str]:
        """What every node and rabbitmqctl share: the cookie (in HOME) and epmd's port."""
        return {
            **os.environ,
            "HOME": str(self.root),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def _node_env(self, port: int) -> dict[str, str]:
        where = self._dir(port)
        return {
            **self._erl_env(),
            "RABBITMQ_NODENAME": self.node(port),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(port + 10),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": str(where / "mnesia"),
            "RABBITMQ_LOG_BASE": str(where / "log"),
            "RABBITMQ_CONFIG_FILE": str(where / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(where / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(where / "rabbit.pid"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(where / "advanced.config"),
        }

    def _prepare(self, port: int) -> None:
        where = self._dir(port)
        where.mkdir(parents=True, exist_ok=True)
        cookie = self.root / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(20))
            cookie.chmod(0o400)
        (where / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"listeners.tcp.default = 127.0.0.1:{port}",
                    "loopback_users = none",
                    "log.console = true",
                    "log.console.level = warning",
                    "log.file = false",
                    "vm_memory_high_watermark.relative = 0.2",
                    "disk_free_limit.absolute = 200MB",
                    "",
                ]
            )
        )
        (where / "enabled_plugins").write_text("[].\n")

    def start_node(self, port: int) -> None:
        """Start one node (its data kept): it rejoins the cluster it belongs to."""
        if self.pid(port) is not None:
            return
        if _port_open(port):
            raise ServiceError(
                f"rabbitmq-cluster: port {port} is taken by a process Fila did not start"
            )
        self._prepare(port)
        self._spawn(port, [SERVER], self._node_env(port))

    def ctl(self, port: int, *args: str, timeout: float = 60) -> str:
        """`rabbitmqctl -n <node> …` as the nodes' own user and cookie; its output."""
        done = subprocess.run(
            [CTL, "-n", self.node(port), *args],
            env=self._erl_env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if done.returncode != 0:
            out = " ".join((done.stdout + done.stderr).split())[-300:]
            raise ServiceError(f"rabbitmq-cluster: rabbitmqctl {' '.join(args)}: {out}")
        return done.stdout

    def _wait_answering(self, port: int, deadline: float) -> None:
        while not _port_open(port):
            if self.pid(port) is None or time.monotonic() > deadline:
                tail = self._log(port)
                raise ServiceError(
                    f"rabbitmq-cluster: node {self.node(port)} did not start | {tail}"
                )
            _reap()
            time.sleep(0.2)

    def members(self, port: int) -> list[str]:
        """Running nodes as `port`'s node sees them."""
        out = self.ctl(port, "eval", "rabbit_nodes:all_running().", timeout=30)
        return sorted(n.strip(" []'\n") for n in out.split(",") if n.strip(" []\n"))

    def healthy(self) -> bool:
        """Every node runs and sees all the others running."""
        if any(self.pid(p) is None or not _port_open(p) for p in self.ports):
            return False
        try:
            return len(self.members(self.ports[0])) == len(self.ports)
        except (ServiceError, subprocess.TimeoutExpired):
            return False

    def up(self, report: Callable[[str], None] = print, timeout: float = 120.0) -> None:
        """Start the nodes not running, join them once, wait until every node is a member."""
        ensure_packages(report)
        deadline = time.monotonic() + timeout
        for port in self.ports:  # together: a node that was clustered waits for its peers
            self.start_node(port)
        for port in self.ports:
            self._wait_answering(port, deadline)
        first = self.node(self.ports[0])
        for port in self.ports[1:]:
            joined = self._dir(port) / "joined"
            if joined.exists():
                continue
            report(f"joining {self.node(port)} to {first}…")
            self.ctl(port, "stop_app")
            self.ctl(port, "join_cluster", first)
            self.ctl(port, "start_app")
            joined.write_text(first)
        while not self.healthy():
            if time.monotonic() > deadline:
                raise ServiceError(f"rabbitmq-cluster: not whole within {timeout:.0f}s")
            time.sleep(0.5)

    def kill(self, port: int, sig: int = signal.SIGKILL) -> None:
        """Signal one node's whole process group (a fault for tests: kill -9)."""
        pid = self.pid(port)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            if sig == signal.SIGKILL:
                _wait_until(partial(self._gone, port), 10, 0.1)

    def _gone(self, port: int) -> bool:
        return self.pid(port) is None and not _port_open(port)

    def stop_node(self, port: int) -> bool:
        """SIGTERM (a clean stop), SIGKILL after 30 s; True when it was running."""
        pid = self.pid(port)
        if pid is None:
            return False
        if not _stop_group(pid, partial(self._gone, port), 30, 0.1):
            _wait_until(partial(self._gone, port), 10, 0.1)
        return True

    def down(self, wipe: bool = False) -> list[int]:
        """Stop the nodes we started, then their epmd (data kept unless `wipe`)."""
        stopped = [port for port in self.ports if self.stop_node(port)]
        epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
        if os.path.exists(epmd):
            subprocess.run(
                [epmd, "-port", str(self.epmd_port), "-kill"],
                capture_output=True,
                check=False,
                env=self._erl_env(),
                timeout=10,
            )
        if wipe:
            shutil.rmtree(self.root, ignore_errors=True)
        return stopped

    # ---------------------------------------------------------------- for tests and operators
    def add_vhost(self, vhost: str) -> None:
        """A vhost with every right for guest (tests isolate themselves in one each)."""
        self.ctl(self.ports[0], "add_vhost", vhost)
        self.ctl(self.ports[0], "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")

    def leader(self, vhost: str, queue: str) -> int:
        """The AMQP port of the node leading quorum queue `queue`."""
        out = self.ctl(
            self.ports[0], "list_queues", "-p", vhost, "name", "leader",
            "--quiet", "--no-table-headers",
        )  # fmt: skip
        for line in out.splitlines():
            name, _, node = line.strip().partition("\t")
            if name == queue:
                for port in self.ports:
                    if node.strip() == self.node(port):
                        return port
        raise ServiceError(f"rabbitmq-cluster: no leader found for {queue!r} in {out!r}")
