"""structlog set up once per process, with secrets masked before anything is written."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from fila.settings import Settings

_SECRET_KEYS = re.compile(r"(api_?key|secret|password|token|authorization|mediakey)", re.I)
_SECRET_URL = re.compile(r"(\w+://[^:/@\s]+:)([^@\s]+)(@)")


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRET_URL.sub(r"\1***\3", value)
    if isinstance(value, dict):
        return {k: ("***" if _SECRET_KEYS.search(str(k)) else _mask(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_mask(v) for v in value)
    return value


def redact(secrets: list[str]) -> structlog.types.Processor:
    """Mask known secret values and secret-looking keys anywhere in an event."""
    literal = [s for s in secrets if s and len(s) >= 4]

    def processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key in list(event):
            value = event[key]
            if _SECRET_KEYS.search(key) and key != "event":
                event[key] = "***"
                continue
            value = _mask(value)
            if isinstance(value, str):
                for secret in literal:
                    value = value.replace(secret, "***")
            event[key] = value
        return event

    return processor


def setup(settings: Settings, process: str) -> None:
    level = getattr(logging, settings.log_level.upper())
    logging.basicConfig(level=level, stream=sys.stderr, format="%(message)s")
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    secrets = [
        settings.api_key,
        settings.webhook_secret,
        settings.s3_secret_key,
        settings.s3_access_key,
        settings.evolution_api_key,
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            redact(secrets),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(process=process)


def get(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
