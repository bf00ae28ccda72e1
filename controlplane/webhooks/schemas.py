"""Bodies of the global webhook routes (contract field names, Portuguese included)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from controlplane.validation import URL, URL_OR_EMPTY
from fila.models import HeaderMap, WebhookTarget

Url = Annotated[str, msgspec.Meta(pattern=URL)]
"""`controlplane.validation.webhook_url`'s form (private targets are refused apart)."""
UrlOrEmpty = Annotated[str, msgspec.Meta(pattern=URL_OR_EMPTY)]
"""A stored target's URL may be cleared with ""."""


class TargetPatch(msgspec.Struct, kw_only=True):
    enabled: bool | None = None
    url: UrlOrEmpty | None = None


class WebhookPatch(msgspec.Struct, kw_only=True):
    """Partial merge: fields left out keep their value."""

    principal: TargetPatch | None = None
    monitoramento: TargetPatch | None = None
    webhookByEvents: bool | None = None
    headers: HeaderMap | None = None


class WebhookData(msgspec.Struct, kw_only=True):
    principal: WebhookTarget
    monitoramento: WebhookTarget
    webhookByEvents: bool
    headers: dict[str, str]
    createdAt: str | None
    updatedAt: str | None


class WebhookResponse(msgspec.Struct, kw_only=True):
    success: bool
    data: WebhookData


class DisabledData(msgspec.Struct, kw_only=True):
    principal: WebhookTarget
    monitoramento: WebhookTarget
    disabledAt: str


class DisabledResponse(msgspec.Struct, kw_only=True):
    success: bool
    message: str
    data: DisabledData


class TestBody(msgspec.Struct, kw_only=True):
    url: Url
    type: Literal["principal", "monitoramento"] = "principal"


class TestData(msgspec.Struct, kw_only=True):
    url: str
    success: bool
    statusCode: int | None
    statusText: str
    responseTime: str
    headers: dict[str, str]
    testedAt: str
    error: str | None = None


class TestResponse(msgspec.Struct, kw_only=True):
    success: bool
    data: TestData
