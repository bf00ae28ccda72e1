"""One way to open an S3 client, so every process signs with the same endpoint, keys and region."""

from __future__ import annotations

from typing import Any

import aioboto3
from botocore.config import Config

from fila.settings import Settings


def client(
    settings: Settings, *, endpoint_url: str | None = None, config: Config | None = None
) -> Any:
    """An aioboto3 S3 client (async context manager); `endpoint_url` overrides the setting."""
    return aioboto3.Session().client(
        "s3",
        endpoint_url=(endpoint_url if endpoint_url is not None else settings.s3_endpoint_url)
        or None,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key,
        region_name=settings.s3_region,
        config=config,
    )
