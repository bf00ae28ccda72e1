"""The whole configuration as one document (export, import)."""

from __future__ import annotations

import msgspec

from controlplane.cleanup.schemas import Schedule
from fila.audiofilter import AudioFilter, EmergencyFilter
from fila.models import RateLimitConfig, WebhookConfig


class ConfigDocument(msgspec.Struct, kw_only=True):
    filters: dict[str, AudioFilter] = msgspec.field(default_factory=dict)
    webhook: WebhookConfig | None = None
    cleanup: Schedule | None = None
    ratelimit: RateLimitConfig | None = None
    emergency: EmergencyFilter | None = None


class ImportResult(msgspec.Struct, kw_only=True):
    success: bool
    filters: int
