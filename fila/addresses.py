"""Which network addresses a webhook may reach when private targets are blocked."""

from __future__ import annotations

import ipaddress


def is_private(address: str) -> bool:
    """Anything not globally routable (private, loopback, link-local, CGNAT, multicast…)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return not ip.is_global or ip.is_private or ip.is_loopback or ip.is_link_local
