"""The state of a workspace's connections to its providers (``integration_health``): what a UI
shows as a banner.  One function writes it, whoever learns the news: a provider's webhook (Unipile
``AccountStatus``) or a health check."""

from __future__ import annotations

import datetime as dt

from sql import Connection, Row

OK = "ok"
DISCONNECTED = "disconnected"


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
    ``since == checked_at`` tells a caller that this report changed the status."""
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
    return row
