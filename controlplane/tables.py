"""Every PostgreSQL table of the control plane (the durable record of Fila's configuration)."""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
    Boolean,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table


class InstanceAudioFilter(Table, tablename="instance_audio_filter"):
    """Audio duration filter of one instance (defaults apply to instances without a row)."""

    instance_name = Varchar(length=255, unique=True, index=True)
    min_duration_seconds = Integer(default=3)
    max_duration_seconds = Integer(default=7200)
    enabled = Boolean(default=True)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class GlobalWebhookConfig(Table, tablename="global_webhook_config"):
    """The main and monitoring webhook targets (a single row, name 'global')."""

    name = Varchar(length=32, unique=True, default="global")
    principal_enabled = Boolean(default=False)
    principal_url = Text(default="")
    monitoring_enabled = Boolean(default=False)
    monitoring_url = Text(default="")
    webhook_by_events = Boolean(default=False)
    headers = JSONB(default={})
    created_at = Timestamptz()
    updated_at = Timestamptz()
    disabled_at = Timestamptz(null=True, default=None)


class CleanupSchedule(Table, tablename="cleanup_schedule"):
    """When S3 cleanup runs and what it keeps (a single row, name 'global')."""

    name = Varchar(length=32, unique=True, default="global")
    enabled = Boolean(default=True)
    retention_days = Integer(default=7)
    daily_time = Varchar(length=5, default="03:00")
    timezone = Varchar(length=64, default="America/Sao_Paulo")
    updated_at = Timestamptz()


class CleanupRun(Table, tablename="cleanup_run"):
    """One execution of S3 cleanup, scheduled or manual."""

    trigger = Varchar(length=16, default="manual")
    started_at = Timestamptz()
    finished_at = Timestamptz(null=True, default=None)
    retention_days = Integer(default=7)
    scanned_count = Integer(default=0)
    deleted_count = Integer(default=0)
    error_count = Integer(default=0)
    success = Boolean(default=False)
    error = Text(default="")


class ConfigEntry(Table, tablename="config_entry"):
    """Fleet-wide settings stored as JSON documents (rate limit, emergency filter)."""

    key = Varchar(length=64, unique=True)
    value = JSONB(default={})
    updated_at = Timestamptz()


class FeedbackStat(Table, tablename="feedback_stat"):
    """One finished processing-feedback session (written by the feedback service)."""

    session_id = Varchar(length=512, index=True)
    instance = Varchar(length=255, index=True)
    process_type = Varchar(length=64, default="")
    status = Varchar(length=16)
    started_at = Timestamptz()
    finished_at = Timestamptz()
    duration_ms = Integer(default=0)


class ConfigChange(Table, tablename="config_change"):
    """One configuration change: when, which route, who (key role and fingerprint, never the
    key), old and new value with secrets masked; written in the change's own transaction."""

    at = Timestamptz(index=True)
    route = Varchar(length=255, default="")
    caller = Varchar(length=128, default="")
    address = Varchar(length=64, default="")
    target = Varchar(length=300, index=True)
    instances = JSONB(default=[])
    old = JSONB(null=True, default=None)
    new = JSONB(null=True, default=None)


TABLES: list[type[Table]] = [
    InstanceAudioFilter,
    GlobalWebhookConfig,
    CleanupSchedule,
    CleanupRun,
    ConfigEntry,
    FeedbackStat,
    ConfigChange,
]
