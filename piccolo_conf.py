"""Piccolo's configuration: the control plane's database, from Fila's settings."""

from __future__ import annotations

from piccolo.conf.apps import AppRegistry
from piccolo.engine.postgres import PostgresEngine

from controlplane.db import engine_config
from fila.settings import get_settings

DB = PostgresEngine(config=engine_config(get_settings().database_url), log_queries=False)

APP_REGISTRY = AppRegistry(apps=["controlplane.piccolo_app"])
