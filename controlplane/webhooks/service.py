"""Global webhook configuration (single row) and the test call to a webhook URL."""

from __future__ import annotations

import http
import time
from typing import Any

import httpx

from controlplane import configlock
from controlplane.clock import iso, now
from controlplane.configlock import config_write
from controlplane.errors import FieldError
from controlplane.history import service as history
from controlplane.runtime import Runtime
from controlplane.tables import GlobalWebhookConfig
from controlplane.validation import header_map, webhook_url
from controlplane.webhooks.schemas import (
    DisabledData,
    DisabledResponse,
    TargetPatch,
    TestData,
    TestResponse,
    WebhookData,
    WebhookPatch,
    WebhookResponse,
)
from fila.configstore import default_webhook
from fila.models import WebhookConfig, WebhookTarget

T = GlobalWebhookConfig
ROW = "global"
TEST_TIMEOUT = 10.0


def _config(row: dict[str, Any]) -> WebhookConfig:
    return WebhookConfig(
        principal=WebhookTarget(enabled=row["principal_enabled"], url=row["principal_url"]),
        monitoramento=WebhookTarget(enabled=row["monitoring_enabled"], url=row["monitoring_url"]),
        webhookByEvents=row["webhook_by_events"],
        headers=dict(row["headers"] or {}) if not isinstance(row["headers"], str) else _json(row),
    )


def _json(row: dict[str, Any]) -> dict[str, str]:
    import json

    value = json.loads(row["headers"] or "{}")
    return {str(k): str(v) for k, v in value.items()}


def _merge(target: WebhookTarget, patch: TargetPatch | None) -> WebhookTarget:
    if patch is None:
        return target
    return WebhookTarget(
        enabled=target.enabled if patch.enabled is None else patch.enabled,
        url=target.url if patch.url is None else patch.url,
    )


class WebhookService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def _row(self) -> dict[str, Any] | None:
        row: dict[str, Any] | None = await T.select().where(T.name == ROW).first()
        return row

    async def stored(self) -> WebhookConfig | None:
        row = await self._row()
        return _config(row) if row else None

    async def get(self) -> WebhookResponse:
        row = await self._row()
        if row is None:
            value = default_webhook(self.rt.settings)
            return WebhookResponse(success=True, data=_data(value, None, None))
        return WebhookResponse(
            success=True,
            data=_data(_config(row), iso(row["created_at"]), iso(row["updated_at"])),
        )

    async def validate(
        self, value: WebhookConfig, touched: set[str] | None = None, prefix: str = ""
    ) -> None:
        """Check what a request sets; a stored target it leaves alone is not judged again."""
        block = self.rt.settings.webhook_block_private
        for name, target in (
            ("principal", value.principal),
            ("monitoramento", value.monitoramento),
        ):
            if touched is not None and name not in touched:
                continue
            if target.url:
                await webhook_url(f"{prefix}{name}.url", target.url, block)
            elif target.enabled:
                raise FieldError(f"{prefix}{name}.url", "is required when enabled")
        header_map(f"{prefix}headers", value.headers)

    async def _save(self, value: WebhookConfig, disabled: bool = False) -> dict[str, Any]:
        at = now()
        row = T(
            name=ROW,
            principal_enabled=value.principal.enabled,
            principal_url=value.principal.url,
            monitoring_enabled=value.monitoramento.enabled,
            monitoring_url=value.monitoramento.url,
            webhook_by_events=value.webhookByEvents,
            headers=value.headers,
            created_at=at,
            updated_at=at,
            disabled_at=at if disabled else None,
        )
        await (
            T.insert(row)
            .on_conflict(
                target=T.name,
                action="DO UPDATE",
                values=[
                    T.principal_enabled,
                    T.principal_url,
                    T.monitoring_enabled,
                    T.monitoring_url,
                    T.webhook_by_events,
                    T.headers,
                    T.updated_at,
                    T.disabled_at,
                ],
            )
            .run()
        )
        await self.rt.config.set_webhook(value)
        await self.rt.config.announce("config", scope="webhook")
        saved = await self._row()
        assert saved is not None
        return saved

    async def current(self) -> WebhookConfig:
        return await self.stored() or default_webhook(self.rt.settings)

    async def merge(self, patch: WebhookPatch) -> WebhookResponse:
        """Read, merge and store under the webhook document's lock."""
        async with config_write(configlock.WEBHOOK):
            return await self._merge_locked(patch)

    async def _merge_locked(self, patch: WebhookPatch) -> WebhookResponse:
        current = await self.current()
        value = WebhookConfig(
            principal=_merge(current.principal, patch.principal),
            monitoramento=_merge(current.monitoramento, patch.monitoramento),
            webhookByEvents=(
                current.webhookByEvents if patch.webhookByEvents is None else patch.webhookByEvents
            ),
            headers=current.headers if patch.headers is None else patch.headers,
        )
        touched = {
            name
            for name, part in (
                ("principal", patch.principal),
                ("monitoramento", patch.monitoramento),
            )
            if part is not None
        }
        await self.validate(value, touched)
        await history.record(configlock.WEBHOOK, current, value)
        row = await self._save(value)
        return WebhookResponse(
            success=True, data=_data(value, iso(row["created_at"]), iso(row["updated_at"]))
        )

    async def replace(self, value: WebhookConfig) -> None:
        """Set the whole configuration (config import), under the lock."""
        async with config_write(configlock.WEBHOOK):
            return await self._replace_locked(value)

    async def _replace_locked(self, value: WebhookConfig) -> None:
        await self.validate(value)
        await history.record(configlock.WEBHOOK, await self.current(), value)
        await self._save(value)

    async def disable(self) -> DisabledResponse:
        """Disable both targets under the lock, keeping the URLs."""
        async with config_write(configlock.WEBHOOK):
            return await self._disable_locked()

    async def _disable_locked(self) -> DisabledResponse:
        current = await self.current()
        value = WebhookConfig(
            principal=WebhookTarget(enabled=False, url=current.principal.url),
            monitoramento=WebhookTarget(enabled=False, url=current.monitoramento.url),
            webhookByEvents=current.webhookByEvents,
            headers=current.headers,
        )
        await history.record(configlock.WEBHOOK, current, value)
        row = await self._save(value, disabled=True)
        return DisabledResponse(
            success=True,
            message="Global webhooks disabled; URLs kept",
            data=DisabledData(
                principal=value.principal,
                monitoramento=value.monitoramento,
                disabledAt=iso(row["disabled_at"]) or "",
            ),
        )

    async def test(self, url: str, kind: str) -> TestResponse:
        """A real POST to `url`; a failure to connect is reported, never raised."""
        await webhook_url("url", url, self.rt.settings.webhook_block_private)
        tested_at = iso(now()) or ""
        body = {
            "event": "webhook.test",
            "type": kind,
            "timestamp": tested_at,
            "server_url": self.rt.settings.server_url,
            "data": {"message": "Fila webhook test"},
        }
        headers = dict((await self.current()).headers)
        started = time.perf_counter()
        try:
            response = await self.rt.http.post(
                url, json=body, headers=headers, timeout=TEST_TIMEOUT
            )
        except httpx.HTTPError as exc:
            elapsed = round((time.perf_counter() - started) * 1000)
            data = TestData(
                url=url,
                success=False,
                statusCode=None,
                statusText="",
                responseTime=f"{elapsed}ms",
                headers={},
                testedAt=tested_at,
                error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
            )
            return TestResponse(success=False, data=data)
        elapsed = round((time.perf_counter() - started) * 1000)
        ok = response.is_success
        data = TestData(
            url=url,
            success=ok,
            statusCode=response.status_code,
            statusText=response.reason_phrase or _phrase(response.status_code),
            responseTime=f"{elapsed}ms",
            headers=dict(response.headers),
            testedAt=tested_at,
        )
        return TestResponse(success=ok, data=data)


def _phrase(code: int) -> str:
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return ""


def _data(value: WebhookConfig, created: str | None, updated: str | None) -> WebhookData:
    return WebhookData(
        principal=value.principal,
        monitoramento=value.monitoramento,
        webhookByEvents=value.webhookByEvents,
        headers=value.headers,
        createdAt=created,
        updatedAt=updated,
    )
