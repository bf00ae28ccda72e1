"""Every knob of Fila, read from `FILA_*` environment variables (and `.env`) in one place.

Each field's default is the documented default; `fila settings` prints the table. A bad value
raises `SettingsError` whose message is one line naming the variable.
"""

from __future__ import annotations

import binascii
import math
import os
import re
import zoneinfo
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec

from fila import audiofilter

PREFIX = "FILA_"


class SettingsError(Exception):
    """A setting is malformed; the message names the environment variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Fila's configuration; field `x_y` is read from `FILA_X_Y`."""

    # --- control plane / API ---
    api_key: str = "fila-dev-key"
    """Admin key: the `apikey` header every route (but health probes) requires."""
    api_key_readonly: str = ""
    """Read-only key: every GET and nothing else (403); empty: no such key (e.g. a wallboard)."""
    auth_fail_limit: int = 20
    """Wrong or missing keys one client address may send per window; past it 429 + Retry-After."""
    auth_fail_window_seconds: int = 300
    """The window of FILA_AUTH_FAIL_LIMIT, counted in Redis (shared by every control plane)."""
    config_history_days: int = 90
    """Days a configuration change stays in its history (GET /config/history)."""
    server_url: str = "http://127.0.0.1:38080"
    """Public URL of the control plane, sent as `server_url` in webhooks."""
    http_host: str = "127.0.0.1"
    http_port: int = 38080
    ingest_http_buffer_bytes: int = 64 * 1024 * 1024
    """Bytes of bodies the HTTP ingest holds at once; past it a request waits, then gets 429."""
    ingest_http_wait_seconds: float = 10.0
    """How long an HTTP ingest request waits for room in that buffer before its 429."""
    ingest_tokens: str = ""
    """Tokens Evolution API may send to /webhook/evolution (comma-separated: two while rotating)."""
    startup_wait_seconds: float = 30.0
    """How long a starting process waits for each of its dependencies before a one-line exit."""
    timezone: str = "America/Sao_Paulo"
    """Timezone of 'today' in counters (processedToday)."""

    # --- RabbitMQ ---
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:35672/"
    rabbitmq_management_url: str = "http://guest:guest@127.0.0.1:35673"
    rabbitmq_nodes: str = ""
    """host:port,… more nodes of the cluster (same user and vhost): a connection moves on."""
    rabbitmq_queue_type: Literal["classic", "quorum"] = "classic"
    """`quorum`: every queue replicated; FIFO on global.messages (no priority before RabbitMQ 4)."""
    evolution_exchange: str = "evolution_exchange"
    evolution_routing_key: str = "messages.upsert"
    ingest_queue: str = "fila.ingest"
    """Fila's own durable queue bound to the Evolution exchange."""
    ingest_queue_existing: bool = False
    """Consume `ingest_queue` as an existing queue (no declare, no bind)."""
    evolution_rabbitmq_mode: Literal["global", "instance"] = "global"
    """`instance`: bind each instance's exchange too (Evolution RABBITMQ_GLOBAL_ENABLED=false)."""
    evolution_instances: str = ""
    """Instances whose exchanges `instance` mode binds (comma-separated); empty: fetchInstances."""
    evolution_instances_refresh_seconds: float = 60.0
    """How often `instance` mode reads the instance list again and binds the new ones."""

    # --- Redis ---
    redis_url: str = "redis://127.0.0.1:36379/0"
    """The server; in `cluster` mode any node (a seed); in `sentinel` mode the db and password."""
    redis_mode: Literal["single", "cluster", "sentinel"] = "single"
    """`single`: one server; `cluster`: Redis Cluster; `sentinel`: the master Sentinel names."""
    redis_nodes: str = ""
    """host:port,… more cluster seeds (tried when redis_url's node is down); sentinel: sentinels."""
    redis_sentinel_master: str = "mymaster"
    """The master name the sentinels watch (`sentinel` mode only)."""
    redis_prefix: str = "fila:"
    """Prefix of every Redis key and pub/sub channel (lets several deployments share a server)."""

    # --- PostgreSQL ---
    database_url: str = "postgresql://fila:fila@127.0.0.1:35432/fila"

    # --- S3 ---
    s3_endpoint_url: str = "http://127.0.0.1:39000"
    """Empty for AWS S3 itself."""
    s3_bucket: str = "fila-audio"
    """Created by the control plane at start when missing (keys that may not: a warning)."""
    s3_access_key: str = "fila"
    s3_secret_key: str = "fila-secret"
    s3_region: str = "us-east-1"
    s3_url_mode: Literal["presigned", "public"] = "presigned"
    s3_public_endpoint_url: str = ""
    """S3 as webhook receivers reach it; audio URLs are built on it (empty: s3_endpoint_url)."""
    s3_public_base_url: str = ""
    """Audio URL base when `s3_url_mode=public`, e.g. a CDN (default: public endpoint/bucket)."""
    s3_presign_seconds: int = 7 * 24 * 3600
    s3_multipart_threshold: int = 8 * 1024 * 1024
    max_audio_bytes: int = 16 * 1024 * 1024
    """Larger audio is dead-lettered as oversized."""

    # --- token bucket ---
    rate_capacity: int = 500
    rate_refill_per_minute: float = 500.0
    rate_policy: Literal["reject", "defer"] = "reject"
    rate_reserve_percent: int = 20
    """Part of the global bucket kept for instances within their fair share (0-90)."""
    rate_instance_capacity: int = 20
    """Burst an instance may draw from that reserve, per unit of weight (binds only then)."""
    rate_active_window_seconds: int = 60
    """The refill is shared among instances that sent in this window, by weight."""

    # --- fleet view ---
    fleet_idle_seconds: float = 7 * 86400
    """An instance silent this long leaves the fleet table (its counters stay readable)."""
    fleet_stats_retention_days: int = 30
    """An instance's counters are kept this long after its last event."""

    # --- audio filter defaults ---
    audio_min_seconds: int = audiofilter.DEFAULT_MIN_SECONDS
    audio_max_seconds: int = audiofilter.DEFAULT_MAX_SECONDS
    filter_cache_ttl_seconds: float = 300.0
    """How long a worker trusts its cached filters and webhook config if no change is announced."""

    # --- workers ---
    ingest_concurrency: int = 16
    delivery_concurrency: int = 32
    heartbeat_seconds: float = 2.0
    worker_ttl_seconds: float = 10.0
    idempotency_ttl_seconds: int = 24 * 3600
    ingest_max_attempts: int = 5
    """Faults of one event worth another try (a flaky media URL) are tried this many times."""
    hold_probe_seconds: float = 5.0
    """While S3, Redis or Evolution API is down a worker holds its queue and checks this often."""

    # --- delivery ---
    webhook_principal_url: str = ""
    """Initial main webhook URL, until the control plane configures one."""
    webhook_monitoring_url: str = ""
    webhook_secret: str = "whsec_ZmlsYS1kZXYtd2ViaG9vay1zZWNyZXQtMzJieXRlcyE="
    """Standard Webhooks signing secret (`whsec_` + base64)."""
    webhook_timeout_seconds: float = 10.0
    """Per connect/read of a webhook POST; the whole POST is cut off at twice this."""
    delivery_retry_schedule: str = "1,5,30,120,600"
    """Seconds between delivery attempts; its length is the number of retries."""
    breaker_failures: int = 5
    breaker_probe_seconds: float = 10.0
    stats_interval_seconds: float = 60.0
    monitoring_batch_size: int = 50
    monitoring_flush_seconds: float = 5.0
    monitoring_retry_schedule: str = "5,30,60,300,600,900,1800,3600"
    """Seconds between tries of a monitoring event not taken (~2 h), then fila.monitoring.dlq."""
    webhook_block_private: bool = False
    """Refuse webhook targets in private/loopback ranges: when saved and at every connection."""

    # --- Evolution API ---
    evolution_url: str = "http://127.0.0.1:38091"
    evolution_api_key: str = "evolution-dev-key"

    # --- processing feedback ---
    feedback_interval_seconds: float = 3.0
    feedback_timeout_seconds: float = 600.0
    feedback_emojis: str = "🔄,⏳"
    feedback_success_emoji: str = "✅"
    feedback_error_emoji: str = "❌"
    feedback_aborted_emoji: str = "⚠️"
    feedback_timeout_emoji: str = "🤷"
    feedback_orphan_sweep_seconds: float = 300.0
    """How often a control plane removes broken or undriven feedback sessions (first sweep one
    period after start, so sessions resumed after a restart are driven first)."""

    # --- S3 cleanup ---
    cleanup_enabled: bool = True
    cleanup_retention_days: int = 7
    cleanup_daily_time: str = "03:00"
    cleanup_timezone: str = "America/Sao_Paulo"

    # --- process ---
    data_dir: str = ".fila"
    """Where embedded services keep data, logs and pid files."""
    log_level: str = "INFO"
    log_json: bool = False

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def retry_schedule(self) -> list[float]:
        """Delivery retry delays in seconds."""
        return [float(x) for x in self.delivery_retry_schedule.split(",") if x.strip()]

    @property
    def monitoring_retries(self) -> list[float]:
        """Monitoring retry delays in seconds."""
        return [float(x) for x in self.monitoring_retry_schedule.split(",") if x.strip()]

    @property
    def ingest_token_list(self) -> list[str]:
        """Every ingest token accepted now (old and new during a rotation)."""
        return [t.strip() for t in self.ingest_tokens.split(",") if t.strip()]

    @property
    def evolution_instance_list(self) -> list[str]:
        """Instances named in the configuration (empty: discovered from Evolution API)."""
        return [i.strip() for i in self.evolution_instances.split(",") if i.strip()]

    @property
    def redis_node_list(self) -> list[tuple[str, int]]:
        """`redis_nodes` as (host, port) pairs."""
        return [_address(a) for a in self.redis_nodes.split(",") if a.strip()]

    @property
    def rabbitmq_urls(self) -> list[str]:
        """`rabbitmq_url`, then the same URL on each of `rabbitmq_nodes`: tried in turn."""
        first = urlsplit(self.rabbitmq_url)
        userinfo = first.netloc.rpartition("@")[0]
        urls = [self.rabbitmq_url]
        for host, port in (_address(a) for a in self.rabbitmq_nodes.split(",") if a.strip()):
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            netloc = f"{userinfo}@{where}" if userinfo else where
            urls.append(urlunsplit(first._replace(netloc=netloc)))
        return urls

    @property
    def feedback_cycle(self) -> list[str]:
        return [e.strip() for e in self.feedback_emojis.split(",") if e.strip()]

    def to_env(self) -> dict[str, str]:
        """The `FILA_*` variables that reproduce these settings in a child process."""
        out: dict[str, str] = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            out[env_name(name)] = text
        return out

    def replace(self, **changes: Any) -> Settings:
        return msgspec.structs.replace(self, **changes)


def env_name(field: str) -> str:
    return PREFIX + field.upper()


_URL_SCHEMES: dict[str, tuple[str, ...]] = {
    "server_url": ("http", "https"),
    "rabbitmq_url": ("amqp", "amqps"),
    "rabbitmq_management_url": ("http", "https"),
    "redis_url": ("redis", "rediss", "unix"),
    "database_url": ("postgresql", "postgres"),
    "evolution_url": ("http", "https"),
}
_OPTIONAL_URLS: dict[str, tuple[str, ...]] = {
    "s3_endpoint_url": ("http", "https"),
    "s3_public_endpoint_url": ("http", "https"),
    "s3_public_base_url": ("http", "https"),
    "webhook_principal_url": ("http", "https"),
    "webhook_monitoring_url": ("http", "https"),
}
_POSITIVE = (
    "http_port",
    "ingest_http_buffer_bytes",
    "ingest_http_wait_seconds",
    "rate_capacity",
    "rate_refill_per_minute",
    "rate_instance_capacity",
    "rate_active_window_seconds",
    "fleet_idle_seconds",
    "fleet_stats_retention_days",
    "ingest_concurrency",
    "delivery_concurrency",
    "heartbeat_seconds",
    "worker_ttl_seconds",
    "idempotency_ttl_seconds",
    "ingest_max_attempts",
    "webhook_timeout_seconds",
    "breaker_failures",
    "breaker_probe_seconds",
    "stats_interval_seconds",
    "monitoring_batch_size",
    "monitoring_flush_seconds",
    "feedback_interval_seconds",
    "feedback_timeout_seconds",
    "feedback_orphan_sweep_seconds",
    "cleanup_retention_days",
    "s3_presign_seconds",
    "s3_multipart_threshold",
    "max_audio_bytes",
    "filter_cache_ttl_seconds",
    "startup_wait_seconds",
    "evolution_instances_refresh_seconds",
    "hold_probe_seconds",
    "auth_fail_limit",
    "auth_fail_window_seconds",
    "config_history_days",
)
_NAMES = ("evolution_exchange", "evolution_routing_key", "ingest_queue", "s3_bucket", "api_key")
"""Strings that name something (queue, exchange, bucket) or guard the API: never blank."""
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
"""S3's bucket naming rule (checked here so a bad name is not reported as S3 being down)."""
_INGEST_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,}")
"""Path-safe (it goes in the webhook URL) and long enough not to be guessed."""
_WEBHOOK_SECRET = re.compile(r"whsec_[A-Za-z0-9+/]+={0,2}")


def _fail(field: str, message: str) -> SettingsError:
    return SettingsError(f"{env_name(field)}: {message}")


def _check_url(field: str, value: str, schemes: tuple[str, ...]) -> None:
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise _fail(field, f"must be a URL with scheme {'/'.join(schemes)} (got {value!r})")
    if parts.scheme != "unix" and not parts.hostname:
        raise _fail(field, f"URL has no host (got {value!r})")
    try:
        _ = parts.port
    except ValueError:
        raise _fail(field, f"URL has a bad port (got {value!r})") from None


def _address(text: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) as a pair; ValueError when it is not one."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(text)
    return host.strip("[]"), int(port)


def _check_webhook_secret(secret: str) -> None:
    """Decoded as `fila.signing` will (standardwebhooks), so a bad one fails here, not later."""
    from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

    if not _WEBHOOK_SECRET.fullmatch(secret):
        raise _fail("webhook_secret", "must be whsec_ followed by standard base64")
    try:
        Webhook(secret)
    except (binascii.Error, ValueError, EmptyWebhookSecretError):
        raise _fail("webhook_secret", "must be whsec_ followed by standard base64") from None


def _validate(s: Settings) -> None:
    for field in s.__struct_fields__:
        value = getattr(s, field)
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(field, f"must be finite (got {value})")
    for field in _NAMES:
        if not getattr(s, field).strip():
            raise _fail(field, "must not be empty")
    if not _BUCKET.fullmatch(s.s3_bucket):
        raise _fail("s3_bucket", "must be 3-63 of a-z, 0-9, '.', '-', starting and ending alnum")
    for field, schemes in _URL_SCHEMES.items():
        _check_url(field, getattr(s, field), schemes)
    for field, schemes in _OPTIONAL_URLS.items():
        if getattr(s, field):
            _check_url(field, getattr(s, field), schemes)
    for field in _POSITIVE:
        if getattr(s, field) <= 0:
            raise _fail(field, f"must be greater than 0 (got {getattr(s, field)})")
    if not 0 <= s.rate_reserve_percent <= 90:
        raise _fail("rate_reserve_percent", f"must be 0 to 90 (got {s.rate_reserve_percent})")
    if s.http_port > 65535:
        raise _fail("http_port", f"must be a TCP port, 1 to 65535 (got {s.http_port})")
    low, high = audiofilter.MIN_SECONDS_MIN, audiofilter.MIN_SECONDS_MAX
    if not low <= s.audio_min_seconds <= high:
        rule = f"must be between {low} and {high} (got {s.audio_min_seconds})"
        raise _fail("audio_min_seconds", rule)
    if not s.audio_min_seconds <= s.audio_max_seconds <= audiofilter.MAX_SECONDS_MAX:
        rule = f"must be ≥ FILA_AUDIO_MIN_SECONDS and ≤ {audiofilter.MAX_SECONDS_MAX}"
        raise _fail("audio_max_seconds", rule)
    for field in ("timezone", "cleanup_timezone"):
        try:
            zoneinfo.ZoneInfo(getattr(s, field))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise _fail(field, f"unknown IANA timezone {getattr(s, field)!r}") from None
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", s.cleanup_daily_time):
        raise _fail("cleanup_daily_time", f"must be HH:MM (got {s.cleanup_daily_time!r})")
    try:
        schedule = s.retry_schedule
    except ValueError:
        raise _fail("delivery_retry_schedule", "must be comma-separated seconds") from None
    if not all(math.isfinite(x) and x > 0 for x in schedule):
        raise _fail("delivery_retry_schedule", "every delay must be a finite number above 0")
    try:
        monitoring = s.monitoring_retries
    except ValueError:
        raise _fail("monitoring_retry_schedule", "must be comma-separated seconds") from None
    if not monitoring or not all(math.isfinite(x) and x > 0 for x in monitoring):
        raise _fail("monitoring_retry_schedule", "needs delays, each a finite number above 0")
    if not s.feedback_cycle:
        raise _fail("feedback_emojis", "needs at least one emoji")
    _check_webhook_secret(s.webhook_secret)
    for token in s.ingest_token_list:
        if not _INGEST_TOKEN.fullmatch(token):
            raise _fail("ingest_tokens", "each token: 16 or more of A-Z a-z 0-9 . _ ~ - (URL-safe)")
    if s.evolution_rabbitmq_mode == "instance" and s.ingest_queue_existing:
        raise _fail(
            "evolution_rabbitmq_mode",
            "instance mode binds Fila's own queue: unset FILA_INGEST_QUEUE_EXISTING",
        )
    for name in s.evolution_instance_list:
        if re.search(r"[/\\\x00-\x1f\x7f]", name):
            raise _fail("evolution_instances", f"{name!r} has '/', '\\' or control characters")
    if s.api_key_readonly and s.api_key_readonly == s.api_key:
        raise _fail("api_key_readonly", "must differ from FILA_API_KEY (it would be an admin key)")
    try:
        nodes = s.redis_node_list
    except ValueError as exc:
        raise _fail("redis_nodes", f"must be host:port,… (got {exc})") from None
    try:
        s.rabbitmq_urls  # noqa: B018 (validation)
    except ValueError as exc:
        raise _fail("rabbitmq_nodes", f"must be host:port,… (got {exc})") from None
    if s.redis_mode == "sentinel" and not nodes:
        raise _fail("redis_nodes", "sentinel mode needs the sentinels' host:port addresses")
    if s.redis_mode == "sentinel" and not s.redis_sentinel_master.strip():
        raise _fail("redis_sentinel_master", "sentinel mode needs the master's name")
    if s.redis_mode != "single" and urlsplit(s.redis_url).scheme == "unix":
        raise _fail("redis_url", f"{s.redis_mode} mode needs a redis:// or rediss:// URL")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise _fail("log_level", f"must be DEBUG, INFO, WARNING or ERROR (got {s.log_level!r})")


def _read_dotenv(path: str) -> dict[str, str]:
    if not os.path.isfile(path):
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def from_env(environ: Mapping[str, str] | None = None, dotenv: str | None = ".env") -> Settings:
    """Build settings from `environ` (default `os.environ`) over `.env`, over the defaults."""
    source: dict[str, str] = _read_dotenv(dotenv) if dotenv else {}
    source.update(os.environ if environ is None else environ)
    raw: dict[str, Any] = {}
    for name in Settings.__struct_fields__:
        key = env_name(name)
        if key in source:
            raw[name] = source[key]
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except SettingsError:
        raise
    except msgspec.ValidationError as exc:
        raise _convert_error(exc) from None


def _convert_error(exc: msgspec.ValidationError) -> SettingsError:
    text = str(exc)
    match = re.search(r"at `\$\.(\w+)`", text)
    if match:
        reason = text.split(" - at ")[0]
        return _fail(match.group(1), reason)
    return SettingsError(text)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once."""
    return from_env()


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, doc) rows for the README table and `fila settings`."""
    import inspect

    source = inspect.getsource(Settings)
    docs: dict[str, str] = {}
    lines = source.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\s+(\w+): .* = .*", line)
        if m and i + 1 < len(lines) and lines[i + 1].strip().startswith('"""'):
            docs[m.group(1)] = lines[i + 1].strip().strip('"')
    defaults = Settings()
    rows = []
    for name in Settings.__struct_fields__:
        rows.append((env_name(name), str(getattr(defaults, name)), docs.get(name, "")))
    return rows
