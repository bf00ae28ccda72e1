"""compose.yaml cannot drift from the settings and the CLI (Docker does not run here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from fila.settings import Settings, env_name

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
FILA_SERVICES = {"migrate", "controlplane", "worker-ingest", "worker-delivery"}
SETTINGS_VARS = {env_name(f) for f in Settings.__struct_fields__}


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def test_the_production_services_are_all_there() -> None:
    names = set(COMPOSE["services"])
    assert {"rabbitmq", "redis", "postgres", "minio"} | FILA_SERVICES <= names
    assert "management" in COMPOSE["services"]["rabbitmq"]["image"]
    for name in ("rabbitmq", "redis", "postgres", "minio", "controlplane"):
        assert "healthcheck" in COMPOSE["services"][name], name
    for name in ("worker-ingest", "worker-delivery"):
        assert COMPOSE["services"][name]["deploy"]["replicas"] >= 1


def test_every_fila_variable_is_a_setting() -> None:
    for name in FILA_SERVICES:
        env = _env(COMPOSE["services"][name])
        unknown = {k for k in env if k.startswith("FILA_")} - SETTINGS_VARS
        assert not unknown, f"{name}: {unknown} are not fields of fila.settings.Settings"
        assert "FILA_RABBITMQ_URL" in env and "FILA_DATABASE_URL" in env


def test_urls_point_at_services_that_exist() -> None:
    names = set(COMPOSE["services"])
    env = _env(COMPOSE["services"]["controlplane"])
    for var in ("FILA_RABBITMQ_URL", "FILA_REDIS_URL", "FILA_DATABASE_URL", "FILA_S3_ENDPOINT_URL"):
        host = urlsplit(re.sub(r"\$\{[^}]*\}", "x", env[var])).hostname
        assert host in names, f"{var} points at {host}, not a compose service"


def test_every_command_is_a_fila_command() -> None:
    for name in FILA_SERVICES:
        argv = COMPOSE["services"][name]["command"]
        out = subprocess.run(
            [sys.executable, "-m", "fila", *argv, "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, f"{name}: fila {' '.join(argv)} --help failed: {out.stderr}"


def test_installed_fila_migrates_from_any_directory(base_settings: object, tmp_path: Path) -> None:
    """The console script (as in the image) finds piccolo_conf wherever it runs."""
    fila = Path(sys.executable).with_name("fila")
    out = subprocess.run(
        [str(fila), "migrate"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return float(match[1]) * (60 if match[2] == "m" else 1)


def test_audio_urls_name_a_host_receivers_can_reach() -> None:
    """Presigned URLs are signed for FILA_S3_PUBLIC_ENDPOINT_URL: never a compose-internal host,
    and by default MinIO's published port."""
    names = set(COMPOSE["services"])
    minio_ports = {str(p).split(":")[0] for p in COMPOSE["services"]["minio"]["ports"]}
    for name in ("controlplane", "worker-ingest"):
        env = _env(COMPOSE["services"][name])
        value = env["FILA_S3_PUBLIC_ENDPOINT_URL"]
        assert value.startswith("${FILA_S3_PUBLIC_ENDPOINT_URL:-"), "operators must set it"
        default = urlsplit(value.split(":-", 1)[1].rstrip("}"))
        assert default.hostname not in names, f"{name}: {default.hostname} is internal"
        assert str(default.port) in minio_ports, f"{name}: {default.port} is not published"


def test_the_control_plane_makes_the_bucket_the_workers_write() -> None:
    """No service creates the bucket but the control plane (`fila controlplane` at start): every
    process must name the same bucket, endpoint and keys, and the controlplane must run."""
    assert COMPOSE["services"]["controlplane"]["command"] == ["controlplane"]
    s3 = {"FILA_S3_BUCKET", "FILA_S3_ENDPOINT_URL", "FILA_S3_ACCESS_KEY", "FILA_S3_SECRET_KEY"}
    views = {name: {k: _env(COMPOSE["services"][name])[k] for k in s3} for name in FILA_SERVICES}
    assert len({tuple(sorted(v.items())) for v in views.values()}) == 1, views
    minio = COMPOSE["services"]["minio"]["environment"]
    env = _env(COMPOSE["services"]["controlplane"])
    assert env["FILA_S3_ACCESS_KEY"] == minio["MINIO_ROOT_USER"]
    assert env["FILA_S3_SECRET_KEY"] == minio["MINIO_ROOT_PASSWORD"]


def test_the_control_plane_stops_within_its_grace() -> None:
    """Docker's SIGKILL must not cut the feedback loops' stop short."""
    from controlplane.app import FEEDBACK_STOP_TIMEOUT
    from controlplane.server import GRACEFUL_SHUTDOWN_SECONDS

    grace = _seconds(COMPOSE["services"]["controlplane"]["stop_grace_period"])
    assert grace >= GRACEFUL_SHUTDOWN_SECONDS + FEEDBACK_STOP_TIMEOUT + 10


def test_the_build_context_leaves_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".fila", ".env", ".git"} <= ignored


def test_every_default_secret_must_be_set_for_compose() -> None:
    """Compose puts every Fila process on a network: the documented defaults would be refused
    at start (fila/exposure.py), so compose itself refuses to run without them."""
    from fila.exposure import SECRETS

    for name in FILA_SERVICES:
        env = _env(COMPOSE["services"][name])
        for field in SECRETS:
            var = env_name(field)
            assert re.fullmatch(rf"\$\{{{var}:\?[^}}]+\}}", env.get(var, "")), (name, var)
