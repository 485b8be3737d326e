"""The alert sender: tells a workspace's Slack channel, at most once per (workspace, kind, UTC
day), what ``integration_health`` says and the channel has not heard yet, and that deliveries
were quarantined.  Nothing here ever runs on a request: the scheduler calls ``send_due_alerts``.

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

Quarantine alerts are claimed earlier, by the webhook that quarantines the day's first unreadable
delivery of a workspace (a row of kind ``quarantine`` written in the quarantine transaction;
later ones that day count as ``suppressed``).  This sender takes each such row
(``take_quarantine_alert``: one replica wins), counts the day's deliveries per provider, posts,
and marks it sent, or gives it back with the error for a later pass (up to
``MAX_QUARANTINE_ATTEMPTS`` within the day).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from clients.slack import SlackClient
from gateway.integrations import OK, alert_day, alert_kind
from gateway.runtime import Runtime
from sql import Database, DatabaseError, Row

log = logging.getLogger("hookgate.alerts")

# A claim older than this whose alert was never marked sent belongs to a sender that died.
STALE_CLAIM = dt.timedelta(minutes=5)
MAX_ALERTS_PER_PASS = 200
MAX_QUARANTINE_ATTEMPTS = 5

INTEGRATION_LABELS = {"unipile": "LinkedIn account (Unipile)"}
PROVIDER_NAMES = {
    "emailbison": "EmailBison",
    "ghl": "GoHighLevel",
    "unipile": "Unipile",
    "smartlead": "SmartLead",
    "instantly": "Instantly",
}


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


def quarantine_alert_text(workspace_id: str, counts: list[Row]) -> str:
    """``3 deliveries from SmartLead could not be read; `hookgate deliveries list …```."""
    parts = []
    for row in counts:
        n = int(row["n"])
        name = PROVIDER_NAMES.get(row["provider"], row["provider"])
        parts.append(f"{n} {'delivery' if n == 1 else 'deliveries'} from {name}")
    return (
        f"{' and '.join(parts)} could not be read and were kept in quarantine; "
        f"`hookgate deliveries list --workspace {workspace_id} --status pending`, "
        "then `hookgate deliveries replay` once the parser is fixed"
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
    sent += await send_quarantine_alerts(runtime.db, clients.slack, now)
    return AlertsSent(sent, failed)


async def send_quarantine_alerts(db: Database, slack: SlackClient, now: dt.datetime) -> int:
    """Send the claimed quarantine alerts of the last day; return how many were posted."""
    if not slack.enabled:
        return 0  # left as they are: sent if Slack is configured within the day
    alerts = await db.fetch_all(
        "pending_quarantine_alerts",
        since=now - dt.timedelta(days=1),
        stale_before=now - STALE_CLAIM,
        max_attempts=MAX_QUARANTINE_ATTEMPTS,
        limit=MAX_ALERTS_PER_PASS,
    )
    posted = 0
    for alert in alerts:
        taken = await db.execute(
            "take_quarantine_alert", id=alert["id"], now=now, stale_before=now - STALE_CLAIM
        )
        if taken != 1:
            continue  # another replica has it
        day_start = dt.datetime.fromisoformat(alert["day"]).replace(tzinfo=dt.UTC)
        counts = await db.fetch_all(
            "quarantine_counts_since", workspace_id=alert["workspace_id"], since=day_start
        )
        text = quarantine_alert_text(alert["workspace_id"], counts)
        result = await slack.post(alert["slack_channel"], text) if counts else None
        if result is not None and result.ok:
            await db.execute("mark_quarantine_alert_sent", id=alert["id"], message=text, now=now)
            posted += 1
            continue
        error = (
            "its deliveries are gone" if result is None else f"{result.error_class}: {result.error}"
        )
        await db.execute("release_quarantine_alert", id=alert["id"], error=error)
        log.warning(
            "quarantine alert not sent; a later pass retries",
            extra={"workspace_id": alert["workspace_id"], "error": error},
        )
    return posted
