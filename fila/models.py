"""Messages that cross a process boundary, one definition for both ends (msgspec Structs).

Field names follow Evolution API and the REST contract (camelCase), since these bodies are
what operators and clients already see on the wire.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from fila.holds import DependencyHold

_BAD_CHARS = r"/\\\x00-\x1f\x7f"
_BAD_INSTANCE = re.compile(f"[{_BAD_CHARS}]")
"""Characters that would break the `audio_<ms>_<instance>.<ext>` object key or an API path."""
INSTANCE_PATTERN = f"^[^{_BAD_CHARS}]*[^\\s{_BAD_CHARS}][^{_BAD_CHARS}]*$"
"""`instance_problem`'s rule as a regex, for the OpenAPI document: not blank, none of those."""
HEADER_NAME = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"
"""An HTTP header name (RFC 9110 token): the webhook headers' keys, validator and document."""
HEADER_VALUE = r"^([\x21-\x7e]+([ \t]+[\x21-\x7e]+)*)?$"
"""An HTTP header value httpx and h11 will send: visible ASCII, inner spaces and tabs only."""
HeaderMap = dict[
    Annotated[str, msgspec.Meta(pattern=HEADER_NAME)],
    Annotated[str, msgspec.Meta(pattern=HEADER_VALUE)],
]
"""Extra headers sent with each webhook POST."""


def instance_problem(instance: str) -> str | None:
    """Why an instance name cannot be used, or None; both inputs and the worker apply it."""
    if not instance.strip():
        return "is empty"
    if _BAD_INSTANCE.search(instance):
        return "has '/', '\\' or control characters"
    return None


# ---------------------------------------------------------------- Evolution API events


class MessageKey(msgspec.Struct, kw_only=True):
    """`fromMe` is always written (the contract's key{remoteJid, fromMe, id}), false if absent;
    `participant` (group messages) only when the event had one."""

    remoteJid: str
    id: str
    fromMe: bool = False
    participant: str | msgspec.UnsetType | None = msgspec.UNSET


class AudioMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Baileys' audioMessage; numbers may arrive as strings, so fields are loose."""

    url: str | None = None
    mimetype: str = "audio/ogg; codecs=opus"
    fileSha256: str | None = None
    fileLength: Any = None
    seconds: int | None = None
    ptt: bool | None = None
    mediaKey: str | None = None
    fileEncSha256: str | None = None
    directPath: str | None = None


class EventData(msgspec.Struct, kw_only=True):
    key: MessageKey
    message: dict[str, Any] | None = None
    messageType: str | None = None
    pushName: str | None = None
    messageTimestamp: Any = None


class EvolutionEvent(msgspec.Struct, kw_only=True):
    """A `messages.upsert` event as Evolution API publishes it (RabbitMQ or HTTP webhook)."""

    event: str
    instance: str
    data: EventData
    server_url: str | None = None
    date_time: str | None = None
    sender: str | None = None
    apikey: str | None = None

    def audio(self) -> AudioMessage | None:
        """The audio part, or None when the event is not a voice note/audio."""
        raw = (self.data.message or {}).get("audioMessage")
        if raw is None:
            return None
        return msgspec.convert(raw, AudioMessage, strict=False)

    def base64(self) -> str | None:
        raw = (self.data.message or {}).get("base64")
        return raw if isinstance(raw, str) and raw else None

    @property
    def message_type(self) -> str:
        if self.data.messageType:
            return self.data.messageType
        keys = [k for k in (self.data.message or {}) if k not in ("base64", "messageContextInfo")]
        return keys[0] if keys else "unknown"

    @property
    def idempotency_key(self) -> str:
        return f"{self.instance}:{self.data.key.id}"


# ---------------------------------------------------------------- global.messages


class QueuedAudio(msgspec.Struct, kw_only=True):
    """Body of a message on `global.messages`: everything the main webhook needs."""

    id: str
    """`<instance>:<messageId>`, the idempotency key (also the AMQP message id)."""
    instance: str
    key: MessageKey
    message: dict[str, Any]
    audioUrl: str
    audioDuration: int
    mimeType: str
    s3Key: str
    priority: int = 1
    receivedAt: float = 0.0
    """Epoch ms when Fila first saw the event (latency is measured from here)."""
    queuedAt: float = 0.0
    server_url: str | None = None
    apikey: str | None = None


class MainWebhookData(msgspec.Struct, kw_only=True):
    key: MessageKey
    message: dict[str, Any]
    audioUrl: str
    audioDuration: int
    mimeType: str


class MainWebhookPayload(msgspec.Struct, kw_only=True):
    """The contract's main webhook body."""

    event: str
    instance: str
    data: MainWebhookData
    server_url: str
    apikey: str | None


MonitoringKind = Literal["queue.error", "queue.stats", "filter.applied", "queue.hold"]


class MonitoringEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The contract's monitoring webhook body."""

    event: MonitoringKind
    timestamp: str
    data: dict[str, Any]
    server_url: str
    instance: str | None = None


# ---------------------------------------------------------------- configuration


RatePolicy = Literal["reject", "defer"]


class RateLimitConfig(msgspec.Struct, kw_only=True):
    """The global bucket and how it is shared (rules in `fila.ratelimit`)."""

    capacity: int = 500
    refillPerMinute: float = 500.0
    policy: RatePolicy = "reject"
    reservePercent: int = 20
    """Part of the global bucket kept for instances within their fair share (0-90)."""
    instanceCapacity: int = 20
    """Burst an instance may draw from the reserve, per unit of weight."""
    activeWindowSeconds: int = 60
    """An instance shares the refill while it sent in this window."""
    weights: dict[str, int] = msgspec.field(default_factory=dict)
    """Instances weighted above 1 (1-10): share and queue priority grow with the weight."""


class WebhookTarget(msgspec.Struct, kw_only=True):
    enabled: bool = False
    url: str = ""


class WebhookConfig(msgspec.Struct, kw_only=True):
    principal: WebhookTarget = msgspec.field(default_factory=WebhookTarget)
    monitoramento: WebhookTarget = msgspec.field(default_factory=WebhookTarget)
    webhookByEvents: bool = False
    headers: HeaderMap = msgspec.field(default_factory=dict)


# ---------------------------------------------------------------- fleet control


ControlKind = Literal["config", "pause", "resume", "drain", "shutdown"]
ConfigScope = Literal["filters", "ratelimit", "webhook", "emergency", "all"]


class ControlMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Published on the control channel; workers record `seq` once applied."""

    seq: int
    kind: ControlKind
    scope: ConfigScope | None = None
    instance: str | None = None
    """For filter changes: the instance concerned (None: all)."""
    role: Literal["ingest", "delivery"] | None = None
    """Restrict pause/resume/drain to one role (None: every worker)."""
    workerId: str | None = None
    sentAt: float = 0.0
    """Epoch seconds, for propagation latency."""


WorkerRole = Literal["ingest", "delivery"]
WorkerState = Literal["running", "paused", "draining", "stopping"]


class WorkerInfo(msgspec.Struct, kw_only=True):
    """What a worker says of itself on each heartbeat."""

    id: str
    role: WorkerRole
    pid: int
    host: str
    startedAt: float
    lastBeat: float
    state: WorkerState = "running"
    inFlight: int = 0
    processed: int = 0
    failed: int = 0
    appliedSeq: int = 0
    appliedAt: float = 0.0
    holds: list[DependencyHold] = msgspec.field(default_factory=list)
    """Shared dependencies this worker waits for (its queues are not consumed meanwhile)."""
    holding: str = ""
    """The first hold as operators read it: `holding: s3 unreachable since 14:02`."""


# ---------------------------------------------------------------- codecs

encoder = msgspec.json.Encoder()


def encode(obj: Any) -> bytes:
    return encoder.encode(obj)
