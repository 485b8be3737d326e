"""The quarantine's periodic work, run by the scheduler (``serve`` or ``worker``), never by a
request: send the Slack alerts that quarantined deliveries claimed, and purge old rows.

A webhook that quarantines the day's first unreadable delivery of a workspace only *claims* the
alert (a row in ``alerts``, kind ``quarantine``, in the quarantine transaction; later ones that
day count as ``suppressed``).  ``send_quarantine_alerts`` picks those rows up within
``ALERTS_INTERVAL_S``.  Every replica may run it: ``take_quarantine_alert`` lets one of them
send each alert (a claim whose sender died is taken over after ``STALE_CLAIM``), so a workspace
hears about its quarantine once a day.  A failed post gives the claim back with the error
(``attempts``, ``last_error``, as ``scheduler.alerts`` does for integration alerts) and a later
tick retries, up to ``MAX_ATTEMPTS`` within the day.
"""

from __future__ import annotations

import datetime as dt
import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from clients.slack import SlackClient
from gateway.quarantine import purge_quarantine
from gateway.runtime import Runtime
from sql import Database, Row

log = logging.getLogger("hookgate.quarantine")

ALERTS_JOB_ID = "quarantine.alerts"
PURGE_JOB_ID = "quarantine.purge"
ALERTS_INTERVAL_S = 15
PURGE_INTERVAL_S = 3600
ALERT_BATCH = 100
MAX_ATTEMPTS = 5
# A claim older than this whose alert was never marked sent belongs to a sender that died.
STALE_CLAIM = dt.timedelta(minutes=5)

PROVIDER_NAMES = {
    "emailbison": "EmailBison",
    "ghl": "GoHighLevel",
    "unipile": "Unipile",
    "smartlead": "SmartLead",
    "instantly": "Instantly",
}


def alert_text(workspace_id: str, counts: list[Row]) -> str:
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


async def send_quarantine_alerts(db: Database, slack: SlackClient, now: dt.datetime) -> int:
    """Send the claimed quarantine alerts of the last day; return how many were posted."""
    if not slack.enabled:
        return 0  # left as they are: sent if Slack is configured within the day
    alerts = await db.fetch_all(
        "pending_quarantine_alerts",
        since=now - dt.timedelta(days=1),
        stale_before=now - STALE_CLAIM,
        max_attempts=MAX_ATTEMPTS,
        limit=ALERT_BATCH,
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
        text = alert_text(alert["workspace_id"], counts)
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
            "quarantine alert not sent; a later tick retries",
            extra={"workspace_id": alert["workspace_id"], "error": error},
        )
    return posted


def add_quarantine_jobs(scheduler: AsyncIOScheduler, runtime: Runtime) -> None:
    """Schedule the alert sender (when the runtime has clients) and the retention purge."""

    async def purge() -> None:
        await purge_quarantine(
            runtime.db, runtime.clock(), runtime.settings.quarantine_retention_days
        )

    scheduler.add_job(
        purge,
        "interval",
        seconds=PURGE_INTERVAL_S,
        id=PURGE_JOB_ID,
        max_instances=1,
        coalesce=True,
        next_run_time=runtime.clock(),  # also once at start: a process may not live an hour
    )
    clients = runtime.clients
    if clients is None:
        return

    async def alerts() -> None:
        await send_quarantine_alerts(runtime.db, clients.slack, runtime.clock())

    scheduler.add_job(
        alerts,
        "interval",
        seconds=ALERTS_INTERVAL_S,
        id=ALERTS_JOB_ID,
        max_instances=1,
        coalesce=True,
    )
