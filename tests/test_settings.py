from __future__ import annotations

import pytest

from gateway.settings import Settings, SettingsError


def test_defaults_are_the_documented_ones() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == "sqlite:///./hookgate.db"
    assert settings.webhook_max_body_bytes == 1024 * 1024
    assert settings.job_lease_s == 30
    assert settings.insights_context_pack_lead_concurrency == 3
    assert settings.unipile_health_interval_s == 900
    assert settings.emailbison_timeout_ms == 15000


def test_names_come_from_the_environment_with_their_prefixes() -> None:
    settings = Settings.from_env(
        {
            "HOOKGATE_PUBLIC_URL": "https://hooks.example.test",
            "HOOKGATE_ADMIN_TOKEN": "adm",
            "DATABASE_PGBOUNCER": "yes",
            "JOB_CONCURRENCY": "4",
            "DATABASE_TIMEOUT_S": "2.5",
        }
    )
    assert settings.public_url == "https://hooks.example.test"
    assert settings.admin_token == "adm"
    assert settings.database_pgbouncer is True
    assert settings.job_concurrency == 4
    assert settings.database_timeout_s == 2.5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JOB_CONCURRENCY": "ten"}, "JOB_CONCURRENCY must be an integer"),
        ({"DATABASE_PGBOUNCER": "maybe"}, "DATABASE_PGBOUNCER must be true or false"),
        ({"JOB_CONCURRENCY": "0"}, "JOB_CONCURRENCY must be greater than 0"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL must start with"),
        ({"JOB_MAX_ATTEMPTS": "1000"}, "JOB_MAX_ATTEMPTS must be at most 100, got 1000"),
        (
            {"DATABASE_URL": "postgresql://h/db", "DATABASE_LISTEN_URL": "pgbouncer://h/db"},
            "DATABASE_LISTEN_URL must start with postgresql://",
        ),
        (
            {"DATABASE_LISTEN_URL": "postgresql://h/db"},
            "DATABASE_LISTEN_URL is for PostgreSQL, but DATABASE_URL names SQLite",
        ),
    ],
)
def test_malformed_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize(("ms", "seconds"), [(10, 1.0), (15000, 15.0), (999_999, 60.0)])
def test_emailbison_timeout_is_clamped(ms: int, seconds: float) -> None:
    assert Settings.from_env({"EMAILBISON_TIMEOUT_MS": str(ms)}).emailbison_timeout_s == seconds


def test_job_max_attempts_may_be_as_high_as_one_hundred() -> None:
    assert Settings.from_env({"JOB_MAX_ATTEMPTS": "100"}).job_max_attempts == 100


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.job_concurrency = 3  # type: ignore[misc]
