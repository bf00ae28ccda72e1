"""Piccolo app of the control plane: its tables and committed migrations."""

from __future__ import annotations

import os

from piccolo.conf.apps import AppConfig

from controlplane.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="controlplane",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=TABLES,
    migration_dependencies=[],
    commands=[],
)
