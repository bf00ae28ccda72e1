"""The TUI's client against a real control plane: names that are not plain path segments."""

from __future__ import annotations

import httpx
import msgspec

from controlplane.feedback.schemas import ActiveSession, FeedbackStats, StatusResult
from fila.audiofilter import AudioFilter
from fila.settings import Settings
from tests.test_controlplane_support import cp_proc, migrated
from tui.client import FilaClient
from tui.contract import ProcessStatus

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


def test_process_status_decodes_a_session_before_its_first_reaction() -> None:
    """The control plane reports `currentReaction: null` until the loop's first reaction is out."""
    sent = StatusResult(
        activeSessionsCount=2,
        activeSessions=[
            ActiveSession(
                sessionId=f"inst:chat:m{n}",
                instance="inst",
                chatId="chat",
                messageId=f"m{n}",
                processType="transcription",
                startTime=1_700_000_000_000,
                timeoutAt=1_700_000_600_000,
                currentReaction=reaction,
                currentEmoji=None if reaction is None else "⏳",
                runningFor=120,
            )
            for n, reaction in enumerate((None, 1))
        ],
        stats=FeedbackStats(activeCount=2, totalStarted=2, averageProcessingTime=0),
    )
    got = msgspec.json.decode(msgspec.json.encode(sent), type=ProcessStatus)
    assert [s.currentReaction for s in got.activeSessions] == [None, 1]
