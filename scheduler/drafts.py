"""Sending an AI draft: one outbound message per draft, and at most one provider call for it.

``queue_draft_send`` (behind ``POST /api/drafts/{id}/send``) creates the draft's outbound
message with ``INSERT … ON CONFLICT DO NOTHING RETURNING`` on ``messages.ai_draft_id`` (unique
per workspace) and looks it up when it exists already, then enqueues its ``DRAFT_SEND`` job
(dedupe key ``DRAFT_SEND:<message id>``), all in one transaction: pressing send any number of
times, at once or one after the other, gives the same message and one job.

The ``DRAFT_SEND`` job claims the send by moving the draft from ``draft`` to ``sending`` in one
atomic update before it calls the provider, so only one run ever makes the call:

- email: ``EmailBisonClient.send_reply`` to the inbound reply (``email_bison_reply_id``), to
  the lead's address;
- LinkedIn: ``UnipileClient.send_message`` to the inbound message's chat
  (``provider_thread_id``, Unipile's ``chat_id``);
- SMS: no outbound SMS client exists; the route refuses SMS drafts, and a job for one fails
  with "no SMS sender configured".

Then, by what the provider answered:

- sent: the draft is ``sent`` and the message gets ``sent_at`` and the provider's id for it
  (``email_bison_reply_id`` / ``unipile_message_id``), so the provider's echo webhook is a
  dedupe hit on this row rather than a second message;
- refused (a 4xx, or the provider is off or not configured for the workspace): nothing was
  sent, so the claim is given back (``draft``) and the job fails, to be retried with backoff;
- unknown (a timeout, a lost connection, a 5xx, an unreadable answer): the draft is
  ``send_unknown`` with the error, for a human to check, and the job ends without retrying.

A run that finds the draft still ``sending`` follows a run that stopped mid-send (killed, or its
lease lost): that send may have gone out, so it too becomes ``send_unknown``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from clients import Clients
from clients.results import SendResult
from scheduler.handlers import JobContext, register
from scheduler.post_process import JobDataError
from scheduler.queue import Job, enqueue
from sql import ConstraintViolation, Database, Row

log = logging.getLogger("hookgate.jobs")

JOB_TYPE = "DRAFT_SEND"
SENDABLE_CHANNELS = frozenset({"email", "linkedin"})
NO_SMS_SENDER = "no SMS sender configured"
# Failures after which the provider certainly did not send: the claim is given back.
NOT_SENT = frozenset({"disabled", "not_configured"})


class DraftNotSendable(ValueError):
    """The draft's channel has no sender (SMS)."""


@dataclasses.dataclass(frozen=True, slots=True)
class QueuedSend:
    draft_id: int
    message_id: int
    status: str  # the draft's status when the send was queued


async def queue_draft_send(
    db: Database, draft_id: int, *, now: dt.datetime, max_attempts: int
) -> QueuedSend | None:
    """The draft's one outbound message, created if needed, and its DRAFT_SEND job enqueued;
    ``None`` for an unknown draft.  Raises ``DraftNotSendable`` for an SMS draft."""
    async with db.transaction() as conn:
        draft = await conn.fetch_one("draft_with_inbound", id=draft_id)
        if draft is None:
            return None
        if draft["channel"] not in SENDABLE_CHANNELS:
            raise DraftNotSendable(NO_SMS_SENDER)
        keys = {"workspace_id": draft["workspace_id"], "ai_draft_id": draft_id}
        subject = draft["subject"]
        if subject and not subject.lower().startswith("re:"):
            subject = f"Re: {subject}"
        row = await conn.fetch_one(
            "insert_draft_message",
            lead_id=draft["lead_id"],
            channel=draft["channel"],
            provider=draft["provider"],
            subject=subject,
            body=draft["body"],
            provider_thread_id=draft["provider_thread_id"],
            now=now,
            **keys,
        )
        if row is None:
            row = await conn.fetch_one("find_draft_message", **keys)
            if row is None:
                raise RuntimeError(f"draft {draft_id}: its message conflicted yet is not found")
        message_id = int(row["id"])
        await enqueue(
            conn,
            JOB_TYPE,
            f"{JOB_TYPE}:{message_id}",
            now=now,
            max_attempts=max_attempts,
            workspace_id=draft["workspace_id"],
            message_id=message_id,
        )
    return QueuedSend(draft_id, message_id, str(draft["status"]))


async def _send(clients: Clients, workspace: Row, message: Row) -> SendResult:
    body = str(message["body"])
    if message["channel"] == "email":
        if not message["inbound_reply_id"]:
            return SendResult(False, None, "not_configured", "the inbound email has no reply id")
        return await clients.emailbison.send_reply(
            workspace, str(message["inbound_reply_id"]), body, to_email=message["lead_email"]
        )
    if not message["provider_thread_id"]:
        return SendResult(False, None, "not_configured", "the inbound message has no chat id")
    return await clients.unipile.send_message(str(message["provider_thread_id"]), body)


def _not_sent(result: SendResult) -> bool:
    """Whether the provider certainly did not send (so sending again is safe): it is off or not
    configured, or it refused the request with a 4xx (``describe`` writes "status 4xx …")."""
    if result.error_class in NOT_SENT:
        return True
    return result.error_class == "http_status" and (result.error or "").startswith("status 4")


async def _record_sent(
    db: Database, message: Row, provider_id: str | None, now: dt.datetime
) -> None:
    column = "email_bison_reply_id" if message["channel"] == "email" else "unipile_message_id"
    ids = {"email_bison_reply_id": None, "unipile_message_id": None}
    try:
        await db.execute(
            "record_draft_message_sent", id=message["id"], now=now, **(ids | {column: provider_id})
        )
    except ConstraintViolation:
        # The provider's echo webhook was stored first, as a message of its own.
        log.warning(
            "sent draft's provider id is held by its echo",
            extra={"message_id": message["id"], "key_name": column, "key_value": provider_id},
        )
        await db.execute("record_draft_message_sent", id=message["id"], now=now, **ids)


@register(JOB_TYPE)
async def send_draft(ctx: JobContext, job: Job) -> None:
    runtime = ctx.runtime
    if runtime.clients is None:
        raise RuntimeError("the outbound clients are not open")
    if job.message_id is None:
        raise JobDataError(f"{JOB_TYPE} job {job.id} names no message")
    message = await runtime.db.fetch_one("draft_send_message", id=job.message_id)
    if message is None or message["workspace_id"] != job.workspace_id:
        raise JobDataError(f"message {job.message_id} is not a draft's message of this workspace")
    extra = {"job_id": job.id, "message_id": message["id"], "draft_id": message["draft_id"]}
    if message["channel"] not in SENDABLE_CHANNELS:
        raise DraftNotSendable(NO_SMS_SENDER)
    workspace = await runtime.workspaces.get(message["workspace_id"])
    if workspace is None:
        raise JobDataError(f"workspace {message['workspace_id']} does not exist")
    if await runtime.db.fetch_one("claim_draft_send", id=message["draft_id"]) is None:
        if message["draft_status"] == "sending":
            error = "an earlier run stopped while sending; it may have been sent"
            await runtime.db.execute(
                "mark_stuck_draft_unknown", id=message["draft_id"], error=error
            )
            log.error("draft send outcome unknown", extra=extra | {"error": error})
        else:
            log.info("draft not sent again", extra=extra | {"status": message["draft_status"]})
        return
    result = await _send(runtime.clients, workspace, message)
    now = runtime.clock()
    if result.ok:
        await runtime.db.execute(
            "finish_draft_send", id=message["draft_id"], status="sent", sent_at=now, error=None
        )
        await _record_sent(runtime.db, message, result.provider_message_id, now)
        log.info("draft sent", extra=extra | {"provider_message_id": result.provider_message_id})
        return
    error = f"{result.error_class}: {result.error}"
    if _not_sent(result):
        await runtime.db.execute(
            "finish_draft_send", id=message["draft_id"], status="draft", sent_at=None, error=error
        )
        raise RuntimeError(f"draft {message['draft_id']} not sent: {error}")
    await runtime.db.execute(
        "finish_draft_send",
        id=message["draft_id"],
        status="send_unknown",
        sent_at=None,
        error=error,
    )
    log.error("draft send outcome unknown; not retried", extra=extra | {"error": error})
