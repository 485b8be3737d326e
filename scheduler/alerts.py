"""The alert sender: tells a workspace's Slack channel what ``integration_health`` says and the
channel has not heard yet, at most once per (workspace, kind, UTC day).

Whoever learns the news only writes the state (``gateway.integrations.record_integration_status``:
the Unipile ``AccountStatus`` webhook, which must make no outbound call, and the health cron).
This sender, run by the scheduler every ``ALERTS_SEND_INTERVAL_S`` and at the end of each health
tick, finds what is due (``due_integration_alerts``):

- an account that is disconnected and has no alert sent (or being sent) today;
- an account back to ok after the channel was told it was disconnected (``notified_status``).

Each is claimed by writing its ``alerts`` row (unique ``(workspace_id, kind, day)``): only the
sender whose statement took the row posts, on whichever replica.  A post that fails gives the
claim back (``claimed_at = NULL``), so a later pass retries; a claim whose sender died is taken
over after ``STALE_CLAIM``.  A sent alert records ``sent_at`` and the status the channel now
knows, in one transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from gateway.integrations import OK, alert_day, alert_kind
from gateway.runtime import Runtime
from sql import DatabaseError, Row

log = logging.getLogger("hookgate.alerts")

# A claim older than this whose alert was never marked sent belongs to a sender that died.
STALE_CLAIM = dt.timedelta(minutes=5)
MAX_ALERTS_PER_PASS = 200

INTEGRATION_LABELS = {"unipile": "LinkedIn account (Unipile)"}


@dataclasses.dataclass(frozen=True, slots=True)
class AlertsSent:
    sent: int = 0
    failed: int = 0


def alert_text(row: Row) -> str:
    label = INTEGRATION_LABELS.get(row["integration"], row["integration"])
    workspace = row["workspace_name"]
    if row["status"] == OK:
        return f":white_check_mark: {workspace}: the {label} is connected again."
    since = row["since"].astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    reason = f" ({row['reason']})" if row["reason"] else ""
    return (
        f":warning: {workspace}: the {label} is disconnected{reason} since {since}. "
        "Reconnect it in Unipile: until then hookgate cannot read or send its messages. "
        "(This alert is sent at most once a day.)"
    )


async def send_due_alerts(runtime: Runtime) -> AlertsSent:
    """Claim and post every due alert; a result, never a Slack exception.  Database errors
    propagate (the caller logs them; what was not sent stays due)."""
    clients = runtime.clients
    if clients is None or not clients.slack.enabled:
        return AlertsSent()  # Slack is off (logged once at start): nothing can be sent
    now = runtime.clock()
    day = alert_day(now)
    due = await runtime.db.fetch_all(
        "due_integration_alerts", day=day, stale_before=now - STALE_CLAIM, limit=MAX_ALERTS_PER_PASS
    )
    sent = failed = 0
    for row in due:
        kind = alert_kind(row["integration"], row["status"])
        text = alert_text(row)
        claim = await runtime.db.fetch_one(
            "claim_integration_alert",
            workspace_id=row["workspace_id"],
            kind=kind,
            day=day,
            message=text,
            now=now,
            stale_before=now - STALE_CLAIM,
        )
        if claim is None:
            continue  # sent already, or another sender holds the claim
        result = await clients.slack.post(row["slack_channel"], text)
        if not result.ok:
            failed += 1
            await runtime.db.execute(
                "release_integration_alert",
                id=claim["id"],
                error=f"{result.error_class}: {result.error}",
            )
            log.warning(
                "alert not sent; a later pass retries",
                extra={"workspace_id": row["workspace_id"], "kind": kind, "error": result.error},
            )
            continue
        sent += 1
        try:
            async with runtime.db.transaction() as conn:
                await conn.execute(
                    "mark_integration_alert_sent", id=claim["id"], now=runtime.clock()
                )
                await conn.execute(
                    "set_notified_status",
                    workspace_id=row["workspace_id"],
                    integration=row["integration"],
                    status=row["status"],
                )
        except DatabaseError as exc:
            log.error(
                "alert sent but not recorded; it may be sent again once its claim goes stale",
                extra={"workspace_id": row["workspace_id"], "kind": kind, "error": str(exc)},
            )
            raise
        log.info(
            "alert sent",
            extra={"workspace_id": row["workspace_id"], "kind": kind, "day": day},
        )
    return AlertsSent(sent, failed)
