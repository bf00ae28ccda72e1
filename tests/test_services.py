"""The embedded services: up is idempotent, status shows each answering."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

from fila.dev import services
from fila.settings import Settings


def test_every_service_answers(base_settings: Settings) -> None:
    rows = services.status(base_settings)
    assert {r.name for r in rows} == {"redis", "postgres", "rabbitmq", "s3"}
    assert all(r.answering for r in rows), [(r.name, r.detail) for r in rows]


def test_up_again_changes_nothing(base_settings: Settings) -> None:
    before = {s.name: s.pid() for s in services.services(base_settings)}
    services.up(base_settings, report=lambda _: None)
    after = {s.name: s.pid() for s in services.services(base_settings)}
    assert before == after
    assert all(pid is not None for pid in after.values())


def test_external_url_is_not_managed(base_settings: Settings) -> None:
    external = base_settings.replace(redis_url="redis://127.0.0.1:1/0")
    (redis,) = services.services(external, ["redis"])
    assert not redis.embedded
    (row,) = services.status(external, ["redis"])
    assert not row.answering and row.detail


def test_cli_status(base_settings: Settings) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fila", "services", "status"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for name in ("redis", "postgres", "rabbitmq", "s3"):
        assert name in out.stdout


def _processes_of(*needles: str) -> list[str]:
    """Command lines of live processes that mention any of the needles."""
    from pathlib import Path

    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().split()[2]
        except OSError:
            continue
        if any(n in cmdline for n in needles) and state != "Z":
            found.append(cmdline)
    return found


def test_down_stops_everything_then_up_brings_it_back(base_settings: Settings) -> None:
    """`down` leaves no process of Fila's services running; `up` restores them all."""
    from pathlib import Path

    root = str(Path(base_settings.data_dir).resolve())
    before = [s.pid() for s in services.services(base_settings)]
    assert all(before)
    try:
        stopped = services.down(base_settings)
        assert set(stopped) == {"redis", "postgres", "rabbitmq", "s3"}
        assert all(s.pid() is None for s in services.services(base_settings))
        assert _processes_of(root) == []
        ports = (
            services.REDIS_PORT,
            services.POSTGRES_PORT,
            services.AMQP_PORT,
            services.MANAGEMENT_PORT,
            services.ERL_DIST_PORT,
            services.EPMD_PORT,
            services.S3_PORT,
        )
        assert [p for p in ports if services._port_open(p)] == []
    finally:
        services.up(base_settings, report=lambda _: None)
    rows = services.status(base_settings)
    assert all(r.answering for r in rows), [(r.name, r.detail) for r in rows]


def _listening_sockets() -> dict[int, tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]:
    """Socket inode → (address, port) of every listening TCP socket, IPv4 and IPv6."""
    from pathlib import Path

    found: dict[int, tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]] = {}
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] != "0A":  # TCP_LISTEN
                continue
            host, port = cols[1].split(":")
            raw = bytes.fromhex(host)
            # the kernel prints each 32-bit word in host (little-endian) order
            swapped = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found[int(cols[9])] = (ipaddress.ip_address(swapped), int(port, 16))
    return found


def _process_tree(roots: set[int]) -> set[int]:
    """`roots` and all their descendants."""
    from pathlib import Path

    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(text.rsplit(")", 1)[1].split()[1])
    tree = set(roots)
    grew = True
    while grew:
        more = {pid for pid, ppid in parent.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


def _sockets_of(pids: set[int]) -> set[int]:
    from pathlib import Path

    inodes: set[int] = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        inodes |= {int(link[8:-1]) for link in links if link.startswith("socket:[")}
    return inodes


def test_every_port_of_the_services_listens_on_loopback_only(base_settings: Settings) -> None:
    """Every listening socket of the embedded services' processes (and epmd, which daemonises
    away from RabbitMQ's tree) is bound to loopback: nothing is reachable from the network."""
    listening = _listening_sockets()
    roots = {pid for s in services.services(base_settings) if (pid := s.pid()) is not None}
    # epmd daemonises out of RabbitMQ's tree: its sockets are found by port
    epmd = {inode for inode, (_, port) in listening.items() if port == services.EPMD_PORT}
    ours = (_sockets_of(_process_tree(roots)) | epmd) & listening.keys()
    bound = sorted((listening[i][1], str(listening[i][0])) for i in ours)
    expected = {
        services.REDIS_PORT,
        services.POSTGRES_PORT,
        services.AMQP_PORT,
        services.MANAGEMENT_PORT,
        services.ERL_DIST_PORT,
        services.EPMD_PORT,
        services.S3_PORT,
    }
    assert expected <= {port for port, _ in bound}, bound
    assert [(p, a) for p, a in bound if not ipaddress.ip_address(a).is_loopback] == [], bound
