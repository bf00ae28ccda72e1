"""The TUI's client against a real control plane: names that are not plain path segments."""

from __future__ import annotations

import httpx

from fila.models import AudioFilter
from fila.settings import Settings
from tests.test_controlplane_support import cp_proc, migrated
from tui.client import FilaClient

__all__ = ["cp_proc", "migrated"]


async def test_instance_names_with_url_characters_reach_their_own_filter(
    settings: Settings, cp_proc: httpx.AsyncClient
) -> None:
    client = FilaClient(settings.replace(server_url=str(cp_proc.base_url)))
    try:
        for n, name in enumerate(("loja#1", "loja?x=1", "loja 2", "loja%3")):
            rule = AudioFilter(minDurationSeconds=5 + n, maxDurationSeconds=500, enabled=True)
            saved = await client.set_audio_filter(name, rule)
            assert saved.instanceName == name
            got = await client.audio_filter(name)
            assert got.minDurationSeconds == 5 + n, (name, got)
    finally:
        await client.aclose()
