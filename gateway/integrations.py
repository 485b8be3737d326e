"""The state of a workspace's connections to its providers (``integration_health``): what a UI
shows as a banner.  One function writes it, whoever learns the news: a provider's webhook (Unipile
``AccountStatus``) or a health check.

It only writes: no outbound call happens here, so the webhook path can use it.  The Slack alert
that a disconnection (or a reconnection) deserves is sent by the scheduler's alert sender
(``scheduler/alerts.py``), which looks for states the workspace's channel has not been told yet.
"""

from __future__ import annotations

import datetime as dt

from sql import Connection, Row

OK = "ok"
DISCONNECTED = "disconnected"


def alert_kind(integration: str, status: str) -> str:
    """``alerts.kind`` of the alert a status calls for: ``unipile_disconnected`` when it goes
    down, ``unipile_reconnected`` when it comes back."""
    return f"{integration}_{'reconnected' if status == OK else status}"


def alert_day(now: dt.datetime) -> str:
    """``alerts.day``: the UTC date, so "once a day" means the same day on every replica."""
    return now.astimezone(dt.UTC).date().isoformat()


async def record_integration_status(
    conn_or_db: Connection,
    workspace_id: str,
    integration: str,
    connected: bool,
    reason: str | None,
    now: dt.datetime,
) -> Row:
    """Upsert the (workspace, integration) row and return it.

    ``status`` is ``ok`` or ``disconnected``; ``reason`` is what the provider last said;
    ``since`` is when the status last changed (kept while it stays the same, so it says how long
    an account has been down); ``last_error`` is the latest reason given while disconnected
    (kept after a reconnection); ``checked_at`` is the time of this report.  The row's
    ``since == checked_at`` tells a caller that this report changed the status.

    A disconnection reported again after today's alert went out is a repeat that the alert's
    claim held back: it is counted on that alert (``alerts.suppressed``)."""
    row = await conn_or_db.fetch_one(
        "record_integration_status",
        workspace_id=workspace_id,
        integration=integration,
        status=OK if connected else DISCONNECTED,
        reason=reason,
        last_error=None if connected else reason,
        now=now,
    )
    assert row is not None  # DO UPDATE always returns the row
    if not connected:
        await conn_or_db.execute(
            "count_suppressed_alert",
            workspace_id=workspace_id,
            kind=alert_kind(integration, DISCONNECTED),
            day=alert_day(now),
        )
    return row
