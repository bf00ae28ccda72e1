"""Who is calling: the key's role and fingerprint (never the key), the route and the address.

Set by the apikey guard for the request's task, read by the configuration history; the
fingerprint lets an operator tell keys apart after a rotation without the history holding one.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

Role = Literal["admin", "readonly"]


@dataclass(frozen=True)
class Caller:
    role: Role
    fingerprint: str
    route: str
    address: str

    @property
    def label(self) -> str:
        """`admin sha256:0123456789ab`: the key's role and fingerprint."""
        return f"{self.role} {self.fingerprint}"


CALLER: ContextVar[Caller | None] = ContextVar("fila_caller", default=None)


def fingerprint(key: str) -> str:
    """First 12 hex digits of the key's SHA-256: names a key without revealing it."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:12]
