"""Every setting hookgate reads, parsed once from the environment into one frozen object.

No other module reads ``os.environ``: the CLI builds a ``Settings`` with ``Settings.from_env()``
and passes it down explicitly.  Tests build their own with ``Settings.from_env({...})``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from sql.database import SQLITE_SYNCHRONOUS

PROVIDERS = ("emailbison", "ghl", "unipile", "smartlead", "instantly")
# One Slack post's attempts: the first and two rate-limit retries (clients/slack.py), so a whole
# post takes at most this many SLACK_TIMEOUT_MS.
SLACK_POST_ATTEMPTS = 3
# A job's attempts: past this many the backoff cap (15 min) has made a failing job retry for a
# day, and a larger number is a typo rather than a policy.
MAX_JOB_ATTEMPTS = 100
# The longest a group of deliveries may wait for more to join it: a few milliseconds at most,
# since every member waits that long for its answer.
MAX_INGEST_LINGER_MS = 10


class SettingsError(ValueError):
    """A setting is present but cannot be read (named in the message)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = "sqlite:///./hookgate.db"
    database_pool_size: int = 20
    database_pgbouncer: bool = False
    database_listen_url: str = ""
    database_timeout_s: float = 5.0
    database_sqlite_synchronous: str = "full"
    public_url: str = "http://127.0.0.1:8000"
    admin_token: str = ""
    cron_secret: str = ""
    webhook_max_body_bytes: int = 1024 * 1024
    webhook_body_timeout_s: float = 10.0
    ingest_batch_max: int = 256
    ingest_linger_ms: float = 0.0
    workspace_cache_ttl_s: float = 5.0
    delivery_stats_flush_s: float = 5.0
    delivery_stats_max_pending_minutes: int = 60
    ghl_max_skew_s: int = 4500
    job_concurrency: int = 10
    job_poll_interval_ms: int = 500
    job_lease_s: int = 30
    job_max_attempts: int = 5
    job_timeout_s: float = 120.0
    shutdown_grace_s: float = 10.0
    scheduler_enabled: bool = True
    job_handler_modules: str = ""
    insights_context_pack_lead_concurrency: int = 3
    context_pack_interval_s: int = 300
    context_pack_breaker_threshold: int = 5
    context_pack_retry_base_ms: int = 500
    context_pack_max_run_s: int = 3600
    unipile_health_interval_s: int = 900
    alerts_send_interval_s: int = 30
    alert_claim_stale_s: float = 300.0
    quarantine_max_per_hour: int = 1000
    quarantine_retention_days: int = 30
    openai_api_key: str = ""
    openai_base_url: str = "https://api.openai.com/v1"
    ai_model: str = "gpt-4o-mini"
    ai_timeout_ms: int = 20000
    slack_bot_token: str = ""
    slack_api_url: str = "https://slack.com/api/"
    unipile_base_url: str = ""
    unipile_api_key: str = ""
    emailbison_timeout_ms: int = 15000
    auto_send_min_confidence: float = 0.9
    auto_send_delay_s: int = 300
    unipile_timeout_ms: int = 15000
    slack_timeout_ms: int = 10000
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every field from ``environ`` (default: the process environment).

        A field ``job_lease_s`` is read from ``JOB_LEASE_S``; ``public_url`` and ``admin_token``
        carry the ``HOOKGATE_`` prefix that DESIGN.md gives them.  Unknown variables are ignored.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = _ENV_NAMES.get(field.name, field.name.upper())
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[field.name] = _parse(name, raw, type(field.default))
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        positive = {
            "DATABASE_POOL_SIZE": self.database_pool_size,
            "WEBHOOK_MAX_BODY_BYTES": self.webhook_max_body_bytes,
            "WEBHOOK_BODY_TIMEOUT_S": self.webhook_body_timeout_s,
            "INGEST_BATCH_MAX": self.ingest_batch_max,
            "JOB_CONCURRENCY": self.job_concurrency,
            "JOB_POLL_INTERVAL_MS": self.job_poll_interval_ms,
            "JOB_LEASE_S": self.job_lease_s,
            "JOB_MAX_ATTEMPTS": self.job_max_attempts,
            "INSIGHTS_CONTEXT_PACK_LEAD_CONCURRENCY": self.insights_context_pack_lead_concurrency,
            "UNIPILE_HEALTH_INTERVAL_S": self.unipile_health_interval_s,
            "CONTEXT_PACK_INTERVAL_S": self.context_pack_interval_s,
            "CONTEXT_PACK_BREAKER_THRESHOLD": self.context_pack_breaker_threshold,
            "CONTEXT_PACK_RETRY_BASE_MS": self.context_pack_retry_base_ms,
            "CONTEXT_PACK_MAX_RUN_S": self.context_pack_max_run_s,
            "ALERTS_SEND_INTERVAL_S": self.alerts_send_interval_s,
            "ALERT_CLAIM_STALE_S": self.alert_claim_stale_s,
            "QUARANTINE_RETENTION_DAYS": self.quarantine_retention_days,
            "JOB_TIMEOUT_S": self.job_timeout_s,
            "DATABASE_TIMEOUT_S": self.database_timeout_s,
            "HOOKGATE_SHUTDOWN_GRACE_S": self.shutdown_grace_s,
            "DELIVERY_STATS_FLUSH_S": self.delivery_stats_flush_s,
            "DELIVERY_STATS_MAX_PENDING_MINUTES": self.delivery_stats_max_pending_minutes,
            "AUTO_SEND_DELAY_S": self.auto_send_delay_s,
        }
        for name, value in positive.items():
            if value <= 0:
                raise SettingsError(f"{name} must be greater than 0, got {value}")
        if self.job_max_attempts > MAX_JOB_ATTEMPTS:
            raise SettingsError(
                f"JOB_MAX_ATTEMPTS must be at most {MAX_JOB_ATTEMPTS}, got {self.job_max_attempts}"
            )
        if not 0 <= self.ingest_linger_ms <= MAX_INGEST_LINGER_MS:
            raise SettingsError(
                f"INGEST_LINGER_MS must be between 0 and {MAX_INGEST_LINGER_MS}, "
                f"got {self.ingest_linger_ms:g}"
            )
        if self.quarantine_max_per_hour < 0:  # 0: quarantine off (unreadable payloads get 400)
            raise SettingsError(
                f"QUARANTINE_MAX_PER_HOUR must be 0 or more, got {self.quarantine_max_per_hour}"
            )
        if not 0 <= self.auto_send_min_confidence <= 1:
            raise SettingsError(
                "AUTO_SEND_MIN_CONFIDENCE must be between 0 and 1, "
                f"got {self.auto_send_min_confidence}"
            )
        if self.alert_claim_stale_s <= self.slack_post_bound_s:
            raise SettingsError(
                "ALERT_CLAIM_STALE_S must be longer than one Slack post can take "
                f"({SLACK_POST_ATTEMPTS} x SLACK_TIMEOUT_MS = {self.slack_post_bound_s:g} s), "
                f"got {self.alert_claim_stale_s:g}"
            )
        if self.database_sqlite_synchronous not in SQLITE_SYNCHRONOUS:
            raise SettingsError(
                f"DATABASE_SQLITE_SYNCHRONOUS must be one of {', '.join(SQLITE_SYNCHRONOUS)}, "
                f"got {self.database_sqlite_synchronous!r}"
            )
        if not self.database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise SettingsError(
                "DATABASE_URL must start with sqlite:/// or postgresql://, "
                f"got {self.database_url.split(':', 1)[0]}:…"
            )
        if self.database_listen_url:
            if not self.database_listen_url.startswith(("postgresql://", "postgres://")):
                raise SettingsError(
                    "DATABASE_LISTEN_URL must start with postgresql://, "
                    f"got {self.database_listen_url.split(':', 1)[0]}:…"
                )
            if self.database_url.startswith("sqlite:///"):
                raise SettingsError(
                    "DATABASE_LISTEN_URL is for PostgreSQL, but DATABASE_URL names SQLite"
                )

    @property
    def emailbison_timeout_s(self) -> float:
        """``EMAILBISON_TIMEOUT_MS`` clamped to [1 s, 60 s]."""
        return min(max(self.emailbison_timeout_ms, 1000), 60000) / 1000

    @property
    def unipile_timeout_s(self) -> float:
        """``UNIPILE_TIMEOUT_MS`` clamped to [1 s, 60 s]."""
        return min(max(self.unipile_timeout_ms, 1000), 60000) / 1000

    @property
    def slack_timeout_s(self) -> float:
        """``SLACK_TIMEOUT_MS`` clamped to [1 s, 60 s]."""
        return min(max(self.slack_timeout_ms, 1000), 60000) / 1000

    @property
    def slack_post_bound_s(self) -> float:
        """The longest one Slack post may take, rate-limit waits included."""
        return SLACK_POST_ATTEMPTS * self.slack_timeout_s

    @property
    def ai_timeout_s(self) -> float:
        """``AI_TIMEOUT_MS`` clamped to [1 s, 300 s]."""
        return min(max(self.ai_timeout_ms, 1000), 300000) / 1000

    def webhook_url(self, provider: str, workspace_id: str, token: str) -> str:
        return f"{self.public_url.rstrip('/')}/webhooks/{provider}/{workspace_id}?token={token}"


_ENV_NAMES = {
    "public_url": "HOOKGATE_PUBLIC_URL",
    "admin_token": "HOOKGATE_ADMIN_TOKEN",
    "workspace_cache_ttl_s": "HOOKGATE_WORKSPACE_CACHE_TTL_S",
    "ghl_max_skew_s": "GHL_MAX_SKEW_S",
    "shutdown_grace_s": "HOOKGATE_SHUTDOWN_GRACE_S",
    "scheduler_enabled": "HOOKGATE_SCHEDULER",
}

_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(name: str, raw: str, kind: type) -> Any:
    raw = raw.strip()
    try:
        if kind is bool:
            lowered = raw.lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {_KIND_NAMES[kind]}, got {raw!r}") from None
    return raw
