"""No well-known secret on a network: a process reachable from other hosts refuses the defaults.

On loopback the documented defaults stay (the README's `./run.sh demo` and `./run.sh test` need
nothing set). A process is on a network when it listens on a non-loopback `FILA_HTTP_HOST`, when
`FILA_SERVER_URL` (how others reach the control plane) is not loopback, or when a server it works
with (RabbitMQ, Redis, PostgreSQL, the Evolution API) is on another host: other hosts then share
its queues, its configuration or its traffic. Names are judged as written, never resolved (a
start-up check must not hang on DNS): only `localhost`, `*.localhost` and loopback IPs count.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from fila.settings import Settings, env_name

SECRETS = ("api_key", "webhook_secret", "evolution_api_key")
"""Every secret with a documented default (printed in the README)."""

HOW = {
    "api_key": "a key of your own, e.g. `openssl rand -hex 32`",
    "webhook_secret": "whsec_ + base64 of 32 random bytes, e.g. whsec_$(openssl rand -base64 32)",
    "evolution_api_key": "your Evolution API's key",
}

_URLS = ("server_url", "rabbitmq_url", "redis_url", "database_url", "evolution_url")


class DefaultSecret(Exception):
    """A documented default secret on a network; the message is one line naming the variable."""


def is_loopback(host: str) -> bool:
    """True for `localhost`, `*.localhost` and loopback IPs; `0.0.0.0` and `::` listen on all."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def exposure(settings: Settings, listens: bool) -> str | None:
    """`<VARIABLE> (<host>)` through which the process is on a network, or None on loopback."""
    if listens and not is_loopback(settings.http_host):
        return f"{env_name('http_host')} ({settings.http_host})"
    for field in _URLS:
        parts = urlsplit(getattr(settings, field))
        if parts.scheme == "unix" or not parts.hostname:
            continue
        if not is_loopback(parts.hostname):
            return f"{env_name(field)} ({parts.hostname})"
    for url in settings.rabbitmq_urls[1:]:  # the other nodes of a cluster
        host = urlsplit(url).hostname or ""
        if not is_loopback(host):
            return f"{env_name('rabbitmq_nodes')} ({host})"
    return None


def refuse_defaults(settings: Settings, listens: bool, secrets: tuple[str, ...] = SECRETS) -> None:
    """Raise `DefaultSecret` if the process is on a network with one of `secrets` at its default."""
    where = exposure(settings, listens)
    if where is None:
        return
    defaults = Settings()
    for field in secrets:
        if getattr(settings, field) == getattr(defaults, field):
            raise DefaultSecret(
                f"{env_name(field)} is the documented default and this process is on a network "
                f"via {where}: set {env_name(field)} to {HOW[field]}"
            )
