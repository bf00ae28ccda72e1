"""Reading an Evolution API event, the one rule for both inputs: HTTP refuses what ingest would.

The HTTP endpoint answers 400 with the field; the ingest worker dead-letters with the reason.
"""

from __future__ import annotations

import msgspec

from fila.models import AudioMessage, EvolutionEvent, instance_problem


class EventError(ValueError):
    """The event cannot be processed: `reason` is the dead letter's, `detail` names the field."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_event(body: bytes) -> EvolutionEvent:
    """Decode and sanity-check an event, naming the offending field when it is wrong."""
    try:
        event = msgspec.json.decode(body, type=EvolutionEvent)
    except msgspec.ValidationError as exc:
        raise EventError("invalid_event", str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise EventError("bad_json", str(exc)) from exc
    problem = instance_problem(event.instance)
    if problem:
        raise EventError("invalid_event", f"instance {problem} - at `$.instance`")
    if not event.data.key.id.strip():
        raise EventError("invalid_event", "message id is empty - at `$.data.key.id`")
    return event


def audio_of(event: EvolutionEvent) -> AudioMessage | None:
    """The voice note the event carries, or None for other messages."""
    try:
        audio = event.audio()
    except msgspec.ValidationError as exc:
        detail = str(exc).replace("at `$", "at `$.data.message.audioMessage")
        raise EventError("invalid_event", detail) from exc
    if audio is not None and audio.seconds is not None and audio.seconds < 0:
        raise EventError(
            "invalid_event",
            "a non-negative number is required - at `$.data.message.audioMessage.seconds`",
        )
    return audio  # no `seconds` (or 0): the worker reads the duration from the audio itself
