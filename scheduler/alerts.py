"""The alert sender: tells a workspace's Slack channel, at most once per (workspace, kind, UTC
day), what ``integration_health`` says and the channel has not heard yet, and that deliveries
were quarantined.  Nothing here ever runs on a request: the scheduler calls ``send_due_alerts``.

Whoever learns the news only writes the state (``gateway.integrations.record_integration_status``:
the Unipile ``AccountStatus`` webhook, which must make no outbound call, and the health cron).
This sender, run by the scheduler every ``ALERTS_SEND_INTERVAL_S`` and at the end of each health
tick, finds what is due (``due_integration_alerts``):

- an account that is disconnected and has no alert today that was sent, is being sent or has an
  unknown outcome;
- an account back to ok after the channel was told (or may have been told) it was disconnected
  (``notified_status``).

Each is claimed by writing its ``alerts`` row (unique ``(workspace_id, kind, day)``), stamped
with the database clock when it is taken: only the sender whose statement took the row posts, on
whichever replica.  Then Slack's verdict (``clients.slack``) decides, the same way for every
alert:

- ``sent``: the row records it (``outcome = 'sent'``, ``sent_at``);
- ``not_sent``: Slack certainly posted nothing, so the claim is given back (``claimed_at =
  NULL``, ``attempts``, ``last_error``) and a later pass retries;
- ``unknown``: Slack may have posted it.  The row records ``outcome = 'unknown'`` with the error
  and is never posted again by itself: the status page shows it and ``hookgate alerts resend ID``
  (``resend_alert``) posts it once more on an operator's word.

A claim with no verdict after ``ALERT_CLAIM_STALE_S`` (longer than any one Slack post can take)
belongs to a sender that stopped after it may have posted: it is settled as ``unknown``, never
taken over.  The claim's stamp fences its verdict: a verdict is written only onto its own claim.

Quarantine alerts are claimed earlier, by the webhook that quarantines the day's first unreadable
delivery of a workspace (a row of kind ``quarantine`` written in the quarantine transaction;
later ones that day count as ``suppressed``).  This sender takes each such row
(``take_quarantine_alert``: one replica wins), counts the day's deliveries per provider, posts,
and records the verdict as above (a refused post is retried up to ``MAX_QUARANTINE_ATTEMPTS``
times within the day).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from clients.slack import NOT_SENT, SENT, UNKNOWN, SlackClient, SlackResult
from gateway.integrations import OK, alert_day, alert_kind
from gateway.runtime import Runtime
from sql import Database, DatabaseError, Row

log = logging.getLogger("hookgate.alerts")

MAX_ALERTS_PER_PASS = 200
MAX_QUARANTINE_ATTEMPTS = 5
QUARANTINE_ALERT_MAX_AGE_S = 86400

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
    """What a pass posted, by verdict."""

    sent: int = 0
    not_sent: int = 0
    unknown: int = 0

    def __add__(self, other: AlertsSent) -> AlertsSent:
        return AlertsSent(
            self.sent + other.sent, self.not_sent + other.not_sent, self.unknown + other.unknown
        )

    @classmethod
    def of(cls, result: SlackResult) -> AlertsSent:
        verdict = result.verdict
        return cls(int(verdict == SENT), int(verdict == NOT_SENT), int(verdict == UNKNOWN))


class ResendRefused(Exception):
    """An operator's resend that must not post (the message says why)."""


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
    """Claim and post every due alert; a tally, never a Slack exception.  Database errors
    propagate (the caller logs them; what was not claimed stays due)."""
    clients = runtime.clients
    if clients is None or not clients.slack.enabled:
        return AlertsSent()  # Slack is off (logged once at start): nothing can be sent
    db = runtime.db
    await settle_stale_claims(db, runtime.settings.alert_claim_stale_s)
    day = alert_day(runtime.clock())
    due = await db.fetch_all("due_integration_alerts", day=day, limit=MAX_ALERTS_PER_PASS)
    tally = AlertsSent()
    for row in due:
        kind = alert_kind(row["integration"], row["status"])
        text = alert_text(row)
        claim = await db.fetch_one(
            "claim_integration_alert",
            workspace_id=row["workspace_id"],
            kind=kind,
            day=day,
            message=text,
        )
        if claim is None:
            continue  # sent already, or another sender holds the claim
        result = await clients.slack.post(row["slack_channel"], text)
        await record_verdict(db, claim, result, notified=row)
        tally += AlertsSent.of(result)
    return tally + await send_quarantine_alerts(db, clients.slack)


async def settle_stale_claims(db: Database, stale_s: float) -> None:
    settled = await db.execute("settle_stale_alert_claims", stale_s=stale_s)
    if settled:
        log.error(
            "alert claims without a verdict settled as unknown; not re-posted: "
            "`hookgate alerts list --unknown`, then `hookgate alerts resend ID`",
            extra={"alerts": settled, "stale_s": stale_s},
        )


async def record_verdict(
    db: Database, claim: Row, result: SlackResult, *, notified: Row | None = None
) -> None:
    """Write Slack's verdict onto the claim (see the module docstring).  ``notified``: the
    integration-health row whose status the channel now knows (or may know)."""
    fence = {"id": claim["id"], "claimed_at": claim["claimed_at"]}
    extra = {"alert_id": claim["id"], "verdict": result.verdict, "error": result.error}
    try:
        if result.verdict == NOT_SENT:
            await db.execute("release_alert_claim", **fence, error=result.error)
        else:
            async with db.transaction() as conn:
                if result.sent:
                    await conn.execute("mark_alert_sent", **fence)
                else:
                    await conn.execute("mark_alert_unknown", **fence, error=result.error)
                if notified is not None:
                    await conn.execute(
                        "set_notified_status",
                        workspace_id=notified["workspace_id"],
                        integration=notified["integration"],
                        status=notified["status"],
                    )
    except DatabaseError as exc:
        log.error(
            "Slack's verdict on an alert not recorded; once its claim is stale it is settled as "
            "unknown, never re-posted",
            extra={**extra, "db_error": str(exc)},
        )
        raise
    if result.verdict == NOT_SENT:
        log.warning("alert not sent; a later pass retries", extra=extra)
    elif result.verdict == UNKNOWN:
        log.error(
            f"alert outcome unknown; not re-posted: `hookgate alerts resend {claim['id']}`",
            extra=extra,
        )
    else:
        log.info("alert sent", extra=extra)


async def send_quarantine_alerts(db: Database, slack: SlackClient) -> AlertsSent:
    """Send the claimed quarantine alerts of the last day."""
    if not slack.enabled:
        return AlertsSent()  # left as they are: sent if Slack is configured within the day
    alerts = await db.fetch_all(
        "pending_quarantine_alerts",
        max_age_s=QUARANTINE_ALERT_MAX_AGE_S,
        max_attempts=MAX_QUARANTINE_ATTEMPTS,
        limit=MAX_ALERTS_PER_PASS,
    )
    tally = AlertsSent()
    for alert in alerts:
        day_start = dt.datetime.fromisoformat(alert["day"]).replace(tzinfo=dt.UTC)
        counts = await db.fetch_all(
            "quarantine_counts_since", workspace_id=alert["workspace_id"], since=day_start
        )
        if not counts:
            continue  # its deliveries are gone: nothing to tell
        text = quarantine_alert_text(alert["workspace_id"], counts)
        claim = await db.fetch_one("take_quarantine_alert", id=alert["id"], message=text)
        if claim is None:
            continue  # another replica has it
        result = await slack.post(alert["slack_channel"], text)
        await record_verdict(db, claim, result)
        tally += AlertsSent.of(result)
    return tally


async def resend_alert(db: Database, slack: SlackClient, alert_id: int) -> SlackResult:
    """Post an alert of unknown outcome once more, on an operator's word; the resend's verdict.
    The row records ``sent``, or else stays ``unknown`` with why (a refused resend leaves the
    first post's outcome as unknown as it was), so that nothing but another resend posts it
    again.  ``ResendRefused`` when it must not be posted."""
    alert = await db.fetch_one("get_alert", id=alert_id)
    if alert is None:
        raise ResendRefused(f"no alert {alert_id}")
    check_resendable(f"alert {alert_id}", alert["outcome"], slack)
    if not alert["slack_channel"] or not alert["message"]:
        raise ResendRefused(f"alert {alert_id} has no channel or no message to post")
    claim = await db.fetch_one("claim_alert_resend", id=alert_id)
    if claim is None:
        raise ResendRefused(f"alert {alert_id} is being re-sent by someone else")
    result = await slack.post(alert["slack_channel"], alert["message"])
    await record_verdict(db, claim, resend_record(result))
    return result


def check_resendable(what: str, outcome: str | None, slack: SlackClient) -> None:
    """``ResendRefused`` unless ``what`` (an alert, a notification) has an unknown outcome and
    Slack is on."""
    if outcome == SENT:
        raise ResendRefused(f"{what} was sent; not re-sent")
    if outcome != UNKNOWN:
        raise ResendRefused(f"{what} has no unknown outcome: it is due or being sent")
    if not slack.enabled:
        raise ResendRefused("Slack is off: SLACK_BOT_TOKEN is unset")


def resend_record(result: SlackResult) -> SlackResult:
    """What a resend's verdict leaves on the row: ``sent``, or else ``unknown``.  A refused resend
    posted nothing, so the first post's outcome is still as unknown as it was."""
    if result.verdict == NOT_SENT:
        return SlackResult(UNKNOWN, f"resend not sent: {result.error}")
    return result
