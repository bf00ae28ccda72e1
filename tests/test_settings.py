"""Settings: documented defaults, and one line naming the variable on a bad value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fila.settings import Settings, SettingsError, from_env


def test_defaults_match_reference_design() -> None:
    s = from_env({}, dotenv=None)
    assert (s.rate_capacity, s.rate_refill_per_minute) == (500, 500.0)
    assert (s.audio_min_seconds, s.audio_max_seconds) == (3, 7200)
    assert s.feedback_interval_seconds == 3.0 and s.feedback_timeout_seconds == 600.0
    assert s.cleanup_daily_time == "03:00" and s.cleanup_timezone == "America/Sao_Paulo"


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("FILA_RATE_CAPACITY", "0", "FILA_RATE_CAPACITY: must be greater than 0"),
        ("FILA_RATE_CAPACITY", "lots", "FILA_RATE_CAPACITY"),
        ("FILA_REDIS_URL", "not a url", "FILA_REDIS_URL: must be a URL"),
        ("FILA_RABBITMQ_URL", "http://x", "FILA_RABBITMQ_URL"),
        ("FILA_CLEANUP_DAILY_TIME", "25:00", "FILA_CLEANUP_DAILY_TIME: must be HH:MM"),
        ("FILA_CLEANUP_TIMEZONE", "Mars/Olympus", "FILA_CLEANUP_TIMEZONE: unknown IANA"),
        ("FILA_RATE_POLICY", "drop", "FILA_RATE_POLICY"),
        ("FILA_AUDIO_MIN_SECONDS", "301", "FILA_AUDIO_MIN_SECONDS"),
        ("FILA_API_KEY", "", "FILA_API_KEY: must not be empty"),
        ("FILA_API_KEY", "  ", "FILA_API_KEY: must not be empty"),
        ("FILA_FEEDBACK_INTERVAL_SECONDS", "nan", "FILA_FEEDBACK_INTERVAL_SECONDS: must be finite"),
        ("FILA_RATE_REFILL_PER_MINUTE", "nan", "FILA_RATE_REFILL_PER_MINUTE: must be finite"),
        ("FILA_WEBHOOK_TIMEOUT_SECONDS", "inf", "FILA_WEBHOOK_TIMEOUT_SECONDS: must be finite"),
        ("FILA_BREAKER_PROBE_SECONDS", "-inf", "FILA_BREAKER_PROBE_SECONDS: must be finite"),
        ("FILA_DELIVERY_RETRY_SCHEDULE", "1,nan", "FILA_DELIVERY_RETRY_SCHEDULE"),
        ("FILA_DELIVERY_RETRY_SCHEDULE", "1,inf", "FILA_DELIVERY_RETRY_SCHEDULE"),
        ("FILA_HTTP_PORT", "70000", "FILA_HTTP_PORT: must be a TCP port"),
        ("FILA_HTTP_PORT", "65536", "FILA_HTTP_PORT: must be a TCP port"),
        ("FILA_HTTP_PORT", "0", "FILA_HTTP_PORT"),
        ("FILA_WEBHOOK_SECRET", "whsec_not base64!", "FILA_WEBHOOK_SECRET: must be whsec_"),
        ("FILA_WEBHOOK_SECRET", "whsec_a", "FILA_WEBHOOK_SECRET: must be whsec_"),
        ("FILA_WEBHOOK_SECRET", "whsec_", "FILA_WEBHOOK_SECRET: must be whsec_"),
        ("FILA_WEBHOOK_SECRET", "c2VjcmV0", "FILA_WEBHOOK_SECRET: must be whsec_"),
        ("FILA_INGEST_QUEUE", "", "FILA_INGEST_QUEUE: must not be empty"),
        ("FILA_S3_BUCKET", "Audio_Bucket", "FILA_S3_BUCKET: must be 3-63 of a-z"),
        ("FILA_EVOLUTION_EXCHANGE", "", "FILA_EVOLUTION_EXCHANGE: must not be empty"),
        ("FILA_EVOLUTION_ROUTING_KEY", " ", "FILA_EVOLUTION_ROUTING_KEY: must not be empty"),
        ("FILA_S3_BUCKET", "", "FILA_S3_BUCKET: must not be empty"),
    ],
)
def test_bad_value_names_the_variable(var: str, value: str, needle: str) -> None:
    with pytest.raises(SettingsError) as info:
        from_env({var: value}, dotenv=None)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_every_secret_accepted_is_one_the_signer_takes() -> None:
    """The check is `fila.signing`'s own decoding: what passes here cannot crash delivery."""
    from fila.signing import Signer

    for secret in ("whsec_c2VjcmV0", "whsec_c2VjcmV0IQ", "whsec_c2VjcmV0IQ=="):
        s = from_env({"FILA_WEBHOOK_SECRET": secret}, dotenv=None)
        assert Signer(s.webhook_secret).headers("msg_1", b"{}")["webhook-signature"]


def test_env_round_trip() -> None:
    s = from_env({"FILA_RATE_POLICY": "defer", "FILA_LOG_JSON": "true"}, dotenv=None)
    assert from_env(s.to_env(), dotenv=None) == s


def test_dotenv_is_honoured(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / ".env"
    path.write_text("FILA_RATE_CAPACITY=42\n")
    assert from_env({}, dotenv=str(path)).rate_capacity == 42
    # the environment wins over .env
    assert from_env({"FILA_RATE_CAPACITY": "7"}, dotenv=str(path)).rate_capacity == 7


def test_cli_fails_with_one_line_not_a_traceback() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fila", "services", "status"],
        env={"FILA_RATE_CAPACITY": "0", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    text = (out.stdout + out.stderr).strip()
    assert "FILA_RATE_CAPACITY" in text
    assert "Traceback" not in text


def test_settings_struct_is_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.rate_capacity = 1  # type: ignore[misc]


def test_readme_settings_table_is_current() -> None:
    """The README's table is `fila settings --markdown`, so a new knob cannot go undocumented."""
    from pathlib import Path

    from fila.cli import settings_markdown

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert settings_markdown() in readme
