"""Sending an AI draft: one outbound message per draft, and at most one provider call for it.

``queue_draft_send`` (behind ``POST /api/drafts/{id}/send``) creates the draft's outbound
message with ``INSERT … ON CONFLICT DO NOTHING RETURNING`` on ``messages.ai_draft_id`` (unique
per workspace) and looks it up when it exists already, then enqueues its ``DRAFT_SEND`` job
(dedupe key ``DRAFT_SEND:<message id>``), all in one transaction: pressing send any number of
times, at once or one after the other, gives the same message and one job.  Pressing send takes
over from a scheduled auto-send (``scheduler.auto_send``): it is cancelled ("an operator pressed
send") and the draft goes now.

``schedule_send`` does the same inside the auto-send's transaction, for a job of its own
(``DRAFT_SEND:<message id>:auto``, payload ``{"auto_send": true}``) due when the auto-send
window ends: pressing send never waits for it, and a cancelled auto-send leaves nothing in the
way of a later press.

The ``DRAFT_SEND`` job claims the send by moving the draft from ``draft`` to ``sending`` in one
atomic update before it calls the provider, so only one run ever makes the call.  The claim
holds until ``sending_until``: the database's clock plus the provider call's own timeout and
``SEND_HOLD_MARGIN_S``, the longest the claiming run can still be inside the call.

- email: ``EmailBisonClient.send_reply`` to the inbound reply (``email_bison_reply_id``), to
  the lead's address;
- LinkedIn: ``UnipileClient.send_message`` to the inbound message's chat
  (``provider_thread_id``, Unipile's ``chat_id``);
- SMS: no outbound SMS client exists; the route refuses SMS drafts, and a job for one fails
  with "no SMS sender configured".

An auto-send run checks again at send time: its auto-send must still be ``scheduled`` (not
cancelled), the workspace must still have auto-send on, and nobody may have answered the lead
in the thread since its message; otherwise it records ``skipped`` and why, and sends nothing.

Then, by what the provider answered:

- sent: in one transaction the draft is ``sent`` and the message gets ``sent_at`` and the
  provider's id for it (``email_bison_reply_id`` / ``unipile_message_id``), so the provider's
  echo webhook is a dedupe hit on this row.  An echo that beat the answer was stored as a row of
  its own: it is merged into the draft's (deleted; its sent time, delivery id and thread kept on
  the draft's row, which takes the provider id), so one send is one row in either order;
- refused (a 4xx, or the provider is off or not configured for the workspace): nothing was
  sent, so the claim is given back (``draft``) and the job fails, to be retried with backoff;
- unknown (a timeout, a lost connection, a 5xx, an unreadable answer): the draft is
  ``send_unknown`` with the error, for a human to check, and the job ends without retrying.

A run that finds the draft ``sending`` while its hold lasts follows a run that may still be
inside the provider call: it fails (``SendInProgress``), to be retried with backoff, and calls
nothing.  Once the hold has passed, the claiming run stopped mid-send (killed, or its lease
lost): that send may have gone out, so the draft becomes ``send_unknown``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from clients import Clients
from clients.results import SendResult
from gateway.settings import Settings
from scheduler.handlers import JobContext, JobDataError, register
from scheduler.queue import Job, enqueue
from sql import Connection, ConstraintViolation, Database, Row

log = logging.getLogger("hookgate.jobs")

JOB_TYPE = "DRAFT_SEND"
SENDABLE_CHANNELS = frozenset({"email", "linkedin"})
NO_SMS_SENDER = "no SMS sender configured"
# Failures after which the provider certainly did not send: the claim is given back.
NOT_SENT = frozenset({"disabled", "not_configured"})
# How long a send claim outlives the provider call's timeout: time for its run to record the
# answer (a database write, a busy event loop).
SEND_HOLD_MARGIN_S = 15.0
# The provider's id for a sent message, by channel.
PROVIDER_ID_COLUMNS = {"email": "email_bison_reply_id", "linkedin": "unipile_message_id"}
# Recording a send retries when an echo commits between taking echoes and taking the id.
RECORD_SENT_ATTEMPTS = 3
OPERATOR_TOOK_OVER = "an operator pressed send"
STOPPED_MID_SEND = "an earlier run stopped while sending; it may have been sent"


class DraftNotSendable(ValueError):
    """The draft's channel has no sender (SMS)."""


class SendInProgress(RuntimeError):
    """Another run holds the draft's send claim and may still be inside the provider call."""


@dataclasses.dataclass(frozen=True, slots=True)
class QueuedSend:
    draft_id: int
    message_id: int
    status: str  # the draft's status when the send was queued
    job_due: bool  # a DRAFT_SEND job was enqueued (or a dead one revived): wake a runner


async def queue_draft_send(
    db: Database, draft_id: int, *, now: dt.datetime, max_attempts: int
) -> QueuedSend | None:
    """The draft's one outbound message, created if needed, and its DRAFT_SEND job enqueued;
    ``None`` for an unknown draft.  Raises ``DraftNotSendable`` for an SMS draft."""
    async with db.transaction() as conn:
        draft = await conn.fetch_one("draft_with_inbound", id=draft_id)
        if draft is None:
            return None
        message_id = await _draft_message(conn, draft, now)
        if await conn.fetch_one("cancel_auto_send", id=draft_id, reason=OPERATOR_TOOK_OVER):
            log.info(
                "auto-send cancelled", extra={"draft_id": draft_id, "reason": OPERATOR_TOOK_OVER}
            )
        job_id = await enqueue(
            conn,
            JOB_TYPE,
            f"{JOB_TYPE}:{message_id}",
            max_attempts=max_attempts,
            workspace_id=draft["workspace_id"],
            message_id=message_id,
        )
    return QueuedSend(draft_id, message_id, str(draft["status"]), job_due=job_id is not None)


async def schedule_send(
    conn: Connection, draft_id: int, *, now: dt.datetime, max_attempts: int
) -> int:
    """Inside the caller's transaction, after ``schedule_auto_send`` set the draft's
    ``auto_send_at``: its outbound message and an auto-send DRAFT_SEND job due then.  Returns
    the message id."""
    draft = await conn.fetch_one("draft_with_inbound", id=draft_id)
    if draft is None:
        raise JobDataError(f"draft {draft_id} does not exist")
    message_id = await _draft_message(conn, draft, now)
    job_id = await enqueue(
        conn,
        JOB_TYPE,
        f"{JOB_TYPE}:{message_id}:auto",
        max_attempts=max_attempts,
        payload={"auto_send": True},
        workspace_id=draft["workspace_id"],
        message_id=message_id,
    )
    if job_id is not None:
        await conn.execute("defer_auto_send_job", job_id=job_id, draft_id=draft_id)
    return message_id


async def _draft_message(conn: Connection, draft: Row, now: dt.datetime) -> int:
    if draft["channel"] not in SENDABLE_CHANNELS:
        raise DraftNotSendable(NO_SMS_SENDER)
    keys = {"workspace_id": draft["workspace_id"], "ai_draft_id": draft["id"]}
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
            raise RuntimeError(f"draft {draft['id']}: its message conflicted yet is not found")
    return int(row["id"])


async def newer_reply(db: Connection, draft_id: int) -> str | None:
    """Why the draft must not go out on its own because the lead was answered in its thread
    since its message (``None``: nobody answered)."""
    reply = await db.fetch_one("newer_reply_in_thread", draft_id=draft_id)
    if reply is None:
        return None
    return f"message {reply['id']} ({reply['event']}) answered the lead in the thread already"


def send_hold_s(settings: Settings, channel: str) -> float:
    """How long a send claim on ``channel`` holds: the provider call's timeout and a margin."""
    timeout_s = settings.emailbison_timeout_s if channel == "email" else settings.unipile_timeout_s
    return timeout_s + SEND_HOLD_MARGIN_S


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


async def _auto_send_still_wanted(db: Database, message: Row, extra: dict[str, object]) -> bool:
    """An auto-send run's checks at send time; a reason not to send is recorded on the draft."""
    if message["auto_send"] != "scheduled":
        log.info("auto-send not sent", extra=extra | {"auto_send": message["auto_send"]})
        return False
    reason: str | None = "auto-send was turned off for the workspace"
    if message["workspace_auto_send"]:
        reason = await newer_reply(db, message["draft_id"])
    if reason is None:
        return True
    await db.execute("skip_scheduled_auto_send", id=message["draft_id"], reason=reason)
    log.info("auto-send skipped at send time", extra=extra | {"reason": reason})
    return False


async def _not_claimed(db: Database, message: Row, extra: dict[str, object]) -> None:
    """The claim went to another run, or the draft is past sending.  A claim whose hold passed
    is a run that stopped mid-send; one that still holds may be inside the call right now."""
    draft_id = message["draft_id"]
    if await db.fetch_one("mark_stuck_draft_unknown", id=draft_id, error=STOPPED_MID_SEND):
        log.error("draft send outcome unknown", extra=extra | {"error": STOPPED_MID_SEND})
        return
    state = await db.fetch_one("draft_send_state", id=draft_id)
    if state is not None and state["status"] == "sending":
        raise SendInProgress(
            f"draft {draft_id} is being sent by another run (its claim holds until "
            f"{state['sending_until']}); not sent by this one"
        )
    status = None if state is None else state["status"]
    auto_send = None if state is None else state["auto_send"]
    log.info("draft not sent again", extra=extra | {"status": status, "auto_send": auto_send})


async def _record_sent(
    db: Database, message: Row, provider_id: str | None, now: dt.datetime
) -> Row | None:
    """One transaction: the draft is sent and its message takes ``sent_at`` and the provider's
    id, merging an echo of the send stored first.  Returns the echo merged, if any.  On
    PostgreSQL an echo can commit between the delete and the update (a unique violation): the
    transaction runs again, and then takes that echo too."""
    keys: dict[str, str | None] = dict.fromkeys(PROVIDER_ID_COLUMNS.values())
    keys[PROVIDER_ID_COLUMNS[message["channel"]]] = provider_id
    for _ in range(RECORD_SENT_ATTEMPTS - 1):
        try:
            return await _record_sent_once(db, message, keys, now)
        except ConstraintViolation:
            continue
    return await _record_sent_once(db, message, keys, now)


async def _record_sent_once(
    db: Database, message: Row, keys: dict[str, str | None], now: dt.datetime
) -> Row | None:
    async with db.transaction() as conn:
        echo = await conn.fetch_one(
            "take_draft_echo", workspace_id=message["workspace_id"], id=message["id"], **keys
        )
        await conn.execute("record_draft_sent", id=message["draft_id"], sent_at=now)
        await conn.execute(
            "record_draft_message_sent",
            id=message["id"],
            sent_at=now if echo is None or echo["sent_at"] is None else echo["sent_at"],
            delivery_id=None if echo is None else echo["delivery_id"],
            provider_thread_id=None if echo is None else echo["provider_thread_id"],
            **keys,
        )
        if echo is not None:
            await conn.execute(
                "repoint_quarantine_replay",
                workspace_id=message["workspace_id"],
                message_id=message["id"],
                echo_id=echo["id"],
            )
    return echo


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
    draft_id = message["draft_id"]
    auto = bool(job.payload.get("auto_send"))
    extra = {"job_id": job.id, "message_id": message["id"], "draft_id": draft_id, "auto": auto}
    if message["channel"] not in SENDABLE_CHANNELS:
        raise DraftNotSendable(NO_SMS_SENDER)
    workspace = await runtime.workspaces.get(message["workspace_id"])
    if workspace is None:
        raise JobDataError(f"workspace {message['workspace_id']} does not exist")
    if auto and not await _auto_send_still_wanted(runtime.db, message, extra):
        return
    hold_s = send_hold_s(runtime.settings, message["channel"])
    if not await runtime.db.fetch_one("claim_draft_send", id=draft_id, hold_s=hold_s, auto=auto):
        await _not_claimed(runtime.db, message, extra)
        return
    result = await _send(runtime.clients, workspace, message)
    if result.ok:
        echo = await _record_sent(runtime.db, message, result.provider_message_id, runtime.clock())
        log.info(
            "draft sent",
            extra=extra
            | {
                "provider_message_id": result.provider_message_id,
                "merged_echo_id": None if echo is None else echo["id"],
            },
        )
        return
    error = f"{result.error_class}: {result.error}"
    if _not_sent(result):
        await runtime.db.execute("finish_draft_send", id=draft_id, status="draft", error=error)
        raise RuntimeError(f"draft {draft_id} not sent: {error}")
    await runtime.db.execute("finish_draft_send", id=draft_id, status="send_unknown", error=error)
    log.error("draft send outcome unknown; not retried", extra=extra | {"error": error})
