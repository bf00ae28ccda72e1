"""structlog set up once per process, with secrets masked before anything is written."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any
from urllib.parse import urlsplit

import structlog

from fila.settings import Settings

_SECRET_KEYS = re.compile(r"(api_?key|secret|password|token|authorization|mediakey)", re.I)
_SECRET_URL = re.compile(r"(\w+://[^:/@\s]+:)([^@\s]+)(@)")
_SECRET_TEXT = re.compile(
    r"""((?:api_?key|secret(?:_?access)?_?key|secret|password|passwd|token|authorization"""
    r"""|media_?key)["']?\s*[:=]\s*b?["']?)([^"'\s,;&}]+)""",
    re.I,
)
"""`apikey": "…`, `password=…` inside free text (a payload excerpt, a library's message)."""
_INGEST_PATH = re.compile(r"(/webhook/evolution/t/)[^/\s\"'?#]+")
"""The ingest token in a request path (access log lines), right or wrong, is never written."""
_MAYBE_SECRET = re.compile(
    r"://|api_?key|secret|passw|token|authorization|media_?key|/webhook/evolution/t/", re.I
)
"""Text every pattern above needs: one scan lets the common line (ids, names) skip all three."""

WIRE_LOGGERS = ("aiormq", "botocore", "aiobotocore", "s3transfer", "urllib3", "hpack", "httpcore")
"""Their DEBUG output dumps raw frames and request bodies (events, audio): INFO at most."""
QUIET_LOGGERS = ("httpx",)
"""One INFO line per request (each media fetch, each webhook POST) beside Fila's own line for
the same note: WARNING at least."""


def _scrub(text: str, literal: list[str]) -> str:
    if _MAYBE_SECRET.search(text) is not None:
        text = _SECRET_TEXT.sub(r"\1***", _SECRET_URL.sub(r"\1***\3", text))
        text = _INGEST_PATH.sub(r"\1***", text)
    for secret in literal:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _mask(value: Any, literal: list[str] | None = None) -> Any:
    if isinstance(value, str):
        return _scrub(value, literal or [])
    if isinstance(value, dict):
        return {
            k: ("***" if _SECRET_KEYS.search(str(k)) else _mask(v, literal))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_mask(v, literal) for v in value)
    return value


def redact(secrets: list[str]) -> structlog.types.Processor:
    """Mask known secret values and secret-looking keys anywhere in an event."""
    literal = [s for s in secrets if s and len(s) >= 4]

    def processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key in list(event):
            if _SECRET_KEYS.search(key) and key != "event":
                event[key] = "***"
                continue
            event[key] = _mask(event[key], literal)
        return event

    return processor


def _redact_stdlib(secrets: list[str]) -> None:
    """Records of libraries (stdlib logging, any handler) are masked as they are created."""
    literal = [s for s in secrets if s and len(s) >= 4]
    make = logging.getLogRecordFactory()
    if getattr(make, "fila_redacting", False):
        make = make.fila_inner  # type: ignore[attr-defined]

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if isinstance(record.msg, str):
            record.msg = _scrub(record.msg, literal)
        if isinstance(record.args, tuple):
            record.args = tuple(_mask(a, literal) for a in record.args)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        clean = _scrub(message, literal)
        if clean != message:  # a secret inside an argument's text: keep the masked text only
            record.msg, record.args = clean, None
        if record.exc_info:
            record.exc_text = _scrub(logging.Formatter().formatException(record.exc_info), literal)
            record.exc_info = None
        return record

    factory.fila_redacting = True  # type: ignore[attr-defined]
    factory.fila_inner = make  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _urls(settings: Settings) -> list[str]:
    return [
        settings.rabbitmq_url,
        settings.rabbitmq_management_url,
        settings.redis_url,
        settings.database_url,
    ]


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
        settings.api_key_readonly,
        settings.webhook_secret,
        settings.s3_secret_key,
        settings.s3_access_key,
        settings.evolution_api_key,
        settings.webhook_secret.removeprefix("whsec_"),
        *settings.ingest_token_list,
        *(urlsplit(url).password or "" for url in _urls(settings)),
    ]
    _redact_stdlib(secrets)
    for name in WIRE_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
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
