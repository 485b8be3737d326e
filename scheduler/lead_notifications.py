"""Step 4 of the post-process job: tell the workspace's Slack channel about an interested lead,
at most once per message, and the operator's resend of a notification whose outcome is unknown.

``messages.notified_at`` is the claim, stamped with the database clock before the post, so of
two runs only one posts.  Then Slack's verdict (``clients.slack``) decides, as it does for the
alerts (``scheduler.alerts``):

- ``sent``: ``notify_outcome = 'sent'``;
- ``not_sent``: Slack certainly posted nothing: the claim is given back and the job fails, so
  the runner retries it (the retry posts without drafting again);
- ``unknown``: ``notify_outcome = 'unknown'`` with the error, and the job succeeds.  It is never
  posted again by itself: ``hookgate alerts list --unknown`` and the status page show it, and
  ``hookgate alerts resend --message ID`` posts it once more.

A run that finds the notification claimed by an earlier run with no verdict recorded (that run
died or was cancelled after it may have posted) settles it as ``unknown`` rather than post again.
The claim's stamp fences the verdict: a verdict is written only onto its own claim.
"""

from __future__ import annotations

import logging

from clients import Clients
from clients.slack import NOT_SENT, UNKNOWN, SlackClient, SlackResult
from gateway.runtime import Runtime
from scheduler.alerts import ResendRefused, check_resendable, resend_record
from scheduler.messages import message_of
from sql import Database, Row

log = logging.getLogger("hookgate.jobs")

# The most of a reply that goes into a Slack message.
SLACK_BODY_CHARS = 300


class NotificationNotSent(RuntimeError):
    """Slack refused the notification: the job fails so that the runner retries it."""


def slack_text(workspace: Row, message: Row, draft_id: int | None) -> str:
    name = " ".join(n for n in (message["lead_first_name"], message["lead_last_name"]) if n)
    who = f"{name} <{message['lead_email']}>" if name and message["lead_email"] else None
    who = who or name or message["lead_email"] or f"lead {message['lead_id']}"
    body = str(message["body"] or "").strip()
    if len(body) > SLACK_BODY_CHARS:
        body = body[:SLACK_BODY_CHARS].rstrip() + "…"
    lines = [f"Interested lead in {workspace['name']}: {who} ({message['channel']})"]
    if body:
        lines.append("> " + body.replace("\n", "\n> "))
    if draft_id is not None:
        lines.append(f"An AI draft reply is ready (draft {draft_id}).")
    return "\n".join(lines)


def _extra(message: Row, result: SlackResult | None = None) -> dict[str, object]:
    extra: dict[str, object] = {
        "message_id": message["id"],
        "workspace_id": message["workspace_id"],
        "lead_id": message["lead_id"],
    }
    if result is not None:
        extra |= {"verdict": result.verdict, "error": result.error}
    return extra


async def notify_interested_lead(
    runtime: Runtime, clients: Clients, workspace: Row, message: Row, draft_id: int | None
) -> None:
    """Step 4 (see the module docstring); raises ``NotificationNotSent`` for a retry."""
    channel = workspace["slack_channel"]
    if not channel or not clients.slack.enabled:
        return
    db = runtime.db
    claim = await db.fetch_one("claim_lead_notification", id=message["id"])
    if claim is None:
        if await db.execute("settle_abandoned_lead_notification", id=message["id"]):
            log.error(
                "Slack notification claimed by an earlier run that recorded no verdict: "
                f"unknown, not re-posted: `hookgate alerts resend --message {message['id']}`",
                extra=_extra(message),
            )
        return
    result = await clients.slack.post(channel, slack_text(workspace, message, draft_id))
    fence = {"id": message["id"], "notified_at": claim["notified_at"]}
    if result.verdict == NOT_SENT:
        await db.execute("release_lead_notification", **fence, error=result.error)
        raise NotificationNotSent(f"Slack notification not sent: {result.error}")
    await db.execute(
        "record_lead_notification", **fence, outcome=result.verdict, error=result.error
    )
    if result.verdict == UNKNOWN:
        log.error(
            "Slack notification outcome unknown; not re-posted: "
            f"`hookgate alerts resend --message {message['id']}`",
            extra=_extra(message, result),
        )


async def unknown_notifications(
    db: Database, *, workspace_id: str | None = None, limit: int = 100
) -> list[Row]:
    """Interested-lead notifications whose outcome is unknown, newest first."""
    return await db.fetch_all("unknown_lead_notifications", workspace_id=workspace_id, limit=limit)


async def resend_notification(runtime: Runtime, slack: SlackClient, message_id: int) -> SlackResult:
    """Post a notification of unknown outcome once more, on an operator's word; the resend's
    verdict.  The message records ``sent``, or else stays ``unknown`` with why.
    ``ResendRefused`` when it must not be posted."""
    db = runtime.db
    message = await message_of(db, message_id)
    if message is None:
        raise ResendRefused(f"no message {message_id}")
    check_resendable(f"the notification of message {message_id}", message["notify_outcome"], slack)
    workspace = await runtime.workspaces.get(message["workspace_id"])
    if workspace is None or not workspace["slack_channel"]:
        raise ResendRefused(f"the workspace of message {message_id} has no Slack channel")
    claim = await db.fetch_one("claim_lead_notification_resend", id=message_id)
    if claim is None:
        raise ResendRefused(f"the notification of message {message_id} is being re-sent")
    text = slack_text(workspace, message, message["draft_id"])
    result = await slack.post(workspace["slack_channel"], text)
    recorded = resend_record(result)
    await db.execute(
        "record_lead_notification",
        id=message_id,
        notified_at=claim["notified_at"],
        outcome=recorded.verdict,
        error=recorded.error,
    )
    log.info("Slack notification re-sent", extra=_extra(message, result))
    return result
