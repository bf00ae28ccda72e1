"""One way to open an S3 client, so every process signs with the same endpoint, keys and region."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import aioboto3
import botocore.loaders
from botocore.config import Config

from fila.settings import Settings


def client(
    settings: Settings, *, endpoint_url: str | None = None, config: Config | None = None
) -> Any:
    """An aioboto3 S3 client (async context manager); `endpoint_url` overrides the setting.

    Signature V4 always: left unset, botocore presigns with V2 in us-east-1 (the default
    region), which buckets created since 2020 and SSE-KMS objects refuse."""
    sigv4 = Config(signature_version="s3v4")
    return aioboto3.Session().client(
        "s3",
        endpoint_url=(endpoint_url if endpoint_url is not None else settings.s3_endpoint_url)
        or None,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key,
        region_name=settings.s3_region,
        config=sigv4.merge(config) if config is not None else sigv4,
    )


@functools.cache
def _unread_endpoint_params() -> frozenset[str]:
    """Parameters S3's endpoint rule set declares but no rule reads (Key, Prefix, CopySource)."""
    ruleset = botocore.loaders.create_loader().load_service_model("s3", "endpoint-rule-set-1")
    read = set(re.findall(r'"ref": "(\w+)"', json.dumps(ruleset)))
    return frozenset(set(ruleset["parameters"]) - read)


def cache_endpoints(client: Any) -> None:
    """Let botocore's endpoint cache hit: it is keyed on every parameter, the object key too,
    so each PutObject and presign re-ran the whole rule set (a third of a PUT's CPU) for an
    answer no rule lets the key change."""
    provider = client._ruleset_resolver._provider
    resolve = provider.resolve_endpoint
    unread = _unread_endpoint_params()

    def resolve_endpoint(**params: Any) -> Any:
        return resolve(**{k: v for k, v in params.items() if k not in unread})

    provider.resolve_endpoint = resolve_endpoint


def put_without_continue(client: Any) -> None:
    """Send each PutObject whole: botocore asks for a `100 Continue` before every body, a
    round trip more, worth it only for bodies too big to send for nothing (ours go multipart)."""
    client.meta.events.register("before-sign.s3.PutObject", _drop_expect)


def _drop_expect(request: Any, **_: Any) -> None:
    if "Expect" in request.headers:
        del request.headers["Expect"]
