"""Configuration export/import for operators (backup, copying a setup between deployments)."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from controlplane.config.schemas import ConfigDocument, ImportResult
from controlplane.config.service import ConfigService
from controlplane.runtime import Runtime
from fila.history import ConfigHistory


def provide(rt: NamedDependency[Runtime]) -> ConfigService:
    return ConfigService(rt)


DEPENDENCIES = {"configs": Provide(provide, sync_to_thread=False)}


class ConfigController(Controller):
    path = "/config"
    tags = ("config",)
    dependencies = DEPENDENCIES

    @get("/export")
    async def export(self, configs: NamedDependency[ConfigService]) -> ConfigDocument:
        return await configs.export()

    @post("/import", status_code=200)
    async def load(
        self, data: JSONBody[ConfigDocument], configs: NamedDependency[ConfigService]
    ) -> ImportResult:
        """Everything is validated before anything is written; workers are told once."""
        return await configs.load(data)

    @get("/history")
    async def history(
        self,
        configs: NamedDependency[ConfigService],
        target: str | None = None,
        since: str | None = None,
        limit: int = 100,
    ) -> ConfigHistory:
        """Configuration changes, newest first: `target` (`instance:<name>` also finds bulk
        changes and imports that set it), `since` an ISO 8601 time, at most `limit` (1-1000)."""
        return await configs.history(target, since, limit)
