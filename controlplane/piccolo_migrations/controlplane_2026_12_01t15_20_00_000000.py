"""Rate limit rows written before fair sharing: the per-instance refill is retired.

`instanceRefillPerMinute` is dropped from the stored document (the share now follows the
active instances); every other field keeps its value and the new ones take their defaults.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-01T15:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "retire instanceRefillPerMinute from the stored rate limit"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="controlplane", description=DESCRIPTION)

    async def run():
        from controlplane.tables import ConfigEntry

        await ConfigEntry.raw(
            "UPDATE config_entry SET value = value - 'instanceRefillPerMinute' "
            "WHERE key = 'ratelimit' AND value ? 'instanceRefillPerMinute'"
        )

    manager.add_raw(run)
    return manager
