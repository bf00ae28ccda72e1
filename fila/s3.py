"""One way to open an S3 client, so every process signs with the same endpoint, keys and region."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import re
import zlib
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit
from xml.etree import ElementTree

import aioboto3
import botocore.loaders
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.utils import percent_encode

from fila.retries import first_then_retried
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


_PROBE_KEY = "fila-presign-probe"
_PLAIN_QUERY = frozenset(
    {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
    }
)


class BucketObjects:
    """One bucket's objects, PUT and presigned exactly as the client does it, minus its per-call
    work (parameter hooks, serialising, endpoint rules, parsing), whose answer no key changes.
    The PUTs go on the client's own connection pool, with its timeouts, proxies and TLS."""

    def __init__(
        self, credentials: Any, base: str, region: str, service: str, session: Any
    ) -> None:
        self._credentials = credentials
        self._base = base
        self._region = region
        self._service = service
        self._session = session

    @classmethod
    async def of(cls, client: Any, bucket: str) -> BucketObjects | None:
        """Learn the objects' base URL and signing scope from one URL the client presigns;
        None when that URL is not a plain SigV4 one with the key at the end of its path."""
        session = getattr(getattr(client, "_endpoint", None), "http_session", None)
        probe = await client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": _PROBE_KEY}, ExpiresIn=60
        )
        parts = urlsplit(probe)
        query = parse_qs(parts.query)
        credentials = client._request_signer._credentials
        scope = query.get("X-Amz-Credential", [""])[0].split("/")
        if not (
            set(query) <= _PLAIN_QUERY
            and credentials is not None
            and session is not None
            and parts.path.endswith("/" + _PROBE_KEY)
            and query.get("X-Amz-Algorithm") == ["AWS4-HMAC-SHA256"]
            and query.get("X-Amz-SignedHeaders") == ["host"]
            and len(scope) == 5
        ):
            return None
        base = urlunsplit((parts.scheme, parts.netloc, parts.path[: -len(_PROBE_KEY)], "", ""))
        return cls(credentials, base, scope[2], scope[3], session)

    def _object_url(self, key: str) -> str:
        """The key as the client's serializer writes a greedy path label."""
        return self._base + str(percent_encode(key, safe="/~"))

    async def url(self, key: str, expires_in: int) -> str:
        """A presigned GET."""
        frozen = await self._credentials.get_frozen_credentials()
        request = AWSRequest(method="GET", url=self._object_url(key))
        S3SigV4QueryAuth(frozen, self._service, self._region, expires=expires_in).add_auth(request)
        return str(request.url)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """PutObject, retried as botocore's standard mode retries (3 tries in all); raises
        ClientError or BotoCoreError."""
        request = await self.signed_put(key, data, content_type)
        await first_then_retried(
            lambda: self._send(request),
            on=retried,
            attempts=3,
            wait_initial=0.05,
            wait_max=1.0,
            timeout=30.0,
        )

    async def _send(self, request: AWSPreparedRequest) -> None:
        response = await self._session.send(request)
        if response.status_code >= 300:
            raise put_error(response.status_code, await response.content)

    async def signed_put(self, key: str, data: bytes, content_type: str) -> AWSPreparedRequest:
        """A PutObject request: the body's SHA-256 signed (S3 refuses a body that differs) and
        its CRC32 stored with the object, as the client sends it by default."""
        frozen = await self._credentials.get_frozen_credentials()
        crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
        headers = {
            "Content-Type": content_type,
            "x-amz-checksum-crc32": crc,
            "x-amz-sdk-checksum-algorithm": "CRC32",
        }
        request = AWSRequest(method="PUT", url=self._object_url(key), data=data, headers=headers)
        S3SigV4Auth(frozen, self._service, self._region).add_auth(request)
        return request.prepare()


_RETRIED_CODES = frozenset(
    {"RequestTimeout", "SlowDown", "Throttling", "ThrottlingException", "InternalError"}
)


def put_error(status: int, body: bytes) -> ClientError:
    """The ClientError botocore would raise for a refused PutObject (code and message)."""
    code, message = str(status), ""
    with contextlib.suppress(ElementTree.ParseError):
        root = ElementTree.fromstring(body) if body else None
        if root is not None:
            code = root.findtext("Code") or code
            message = root.findtext("Message") or ""
    error = {"Error": {"Code": code, "Message": message}}
    return ClientError({**error, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def retried(exc: Exception) -> bool:
    """What botocore's standard retry mode retries: transport faults, 5xx, throttling."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = exc.response.get("Error", {}).get("Code", "")
        return status >= 500 or status == 429 or code in _RETRIED_CODES
    return isinstance(exc, BotoCoreError)
