"""The two Evolution API calls feedback needs, retried with stamina on transient failures."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx
import stamina

from fila import logging as flog
from fila.settings import Settings

log = flog.get("controlplane.feedback.evolution")


class EvolutionError(Exception):
    """Evolution API refused or kept failing a call (after retries)."""


class _Transient(Exception):
    """A 5xx or 429 answer: worth another attempt."""


class EvolutionClient:
    """Sends reactions and texts; each call gives up after its time budget, never raises raw."""

    PER_CALL_TIMEOUT = 10.0
    """One HTTP attempt, whole; a call's retries stop starting new ones when its budget is spent,
    so a call takes at most its budget plus one attempt."""

    def __init__(self, settings: Settings) -> None:
        self._client = httpx.AsyncClient(
            base_url=settings.evolution_url.rstrip("/"),
            headers={"apikey": settings.evolution_api_key},
            timeout=10.0,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send_reaction(
        self,
        instance: str,
        chat_id: str,
        message_id: str,
        emoji: str,
        *,
        budget: float,
        from_me: bool = False,
    ) -> None:
        """`from_me` must match the message's key, or WhatsApp finds no message to react to;
        the chat id (`…@s.whatsapp.net`, `…@g.us`, `…@lid`) goes out as given."""
        key = {"remoteJid": chat_id, "fromMe": from_me, "id": message_id}
        body = {"key": key, "reaction": emoji}
        await self._post(f"/message/sendReaction/{quote(instance, safe='')}", body, budget)

    async def send_text(self, instance: str, number: str, text: str, *, budget: float) -> None:
        body = {"number": number, "text": text}
        await self._post(f"/message/sendText/{quote(instance, safe='')}", body, budget)

    async def _post(self, path: str, body: dict[str, Any], budget: float) -> None:
        per_call = min(self.PER_CALL_TIMEOUT, budget)
        try:
            async for attempt in stamina.retry_context(
                on=(httpx.TransportError, _Transient),
                attempts=None,
                timeout=budget,
                wait_initial=0.05,
                wait_max=1.0,
                wait_jitter=0.05,
            ):
                with attempt:
                    try:
                        # httpx's timeout is per phase and per read; this bounds the attempt.
                        async with asyncio.timeout(per_call):
                            response = await self._client.post(path, json=body, timeout=per_call)
                    except TimeoutError:
                        raise _Transient(f"no answer within {per_call:g} s") from None
                    if response.status_code >= 500 or response.status_code == 429:
                        log.warning(
                            "evolution api call failed, retrying",
                            path=path,
                            status=response.status_code,
                            attempt=attempt.num,
                        )
                        raise _Transient(f"HTTP {response.status_code}")
                    if response.status_code >= 400:
                        raise EvolutionError(
                            f"{path}: HTTP {response.status_code} {response.text[:200]}"
                        )
        except (httpx.TransportError, _Transient) as exc:
            raise EvolutionError(f"{path}: {type(exc).__name__}: {exc}") from exc
