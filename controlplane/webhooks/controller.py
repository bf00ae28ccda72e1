"""Global webhook routes of the contract."""

from __future__ import annotations

from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from controlplane.runtime import Runtime
from controlplane.webhooks.schemas import (
    DisabledResponse,
    TestBody,
    TestResponse,
    WebhookPatch,
    WebhookResponse,
)
from controlplane.webhooks.service import WebhookService


def provide(rt: NamedDependency[Runtime]) -> WebhookService:
    return WebhookService(rt)


DEPENDENCIES = {"webhooks": Provide(provide, sync_to_thread=False)}


class WebhookController(Controller):
    path = "/webhook/global"
    tags = ("webhooks",)
    dependencies = DEPENDENCIES

    @get("/config")
    async def get_config(self, webhooks: NamedDependency[WebhookService]) -> WebhookResponse:
        return await webhooks.get()

    @post("/config", status_code=200)
    async def post_config(
        self, data: JSONBody[WebhookPatch], webhooks: NamedDependency[WebhookService]
    ) -> WebhookResponse:
        """Partial merge of the configuration; URLs must be http/https."""
        return await webhooks.merge(data)

    @put("/config")
    async def put_config(
        self, data: JSONBody[WebhookPatch], webhooks: NamedDependency[WebhookService]
    ) -> WebhookResponse:
        """Same as POST: partial merge."""
        return await webhooks.merge(data)

    @delete("/config", status_code=200)
    async def delete_config(self, webhooks: NamedDependency[WebhookService]) -> DisabledResponse:
        """Disables both webhooks and keeps their URLs."""
        return await webhooks.disable()

    @post("/test", status_code=200)
    async def test(
        self, data: JSONBody[TestBody], webhooks: NamedDependency[WebhookService]
    ) -> TestResponse:
        """A real POST (10 s timeout); a connection failure is `success: false`, not an error."""
        return await webhooks.test(data.url, data.type)
