"""Auto-send: a workspace's AI drafts that send themselves after a window in which an operator
can stop them.  Off unless the workspace has ``auto_send`` on (``workspace create --auto-send``,
``hookgate drafts auto-send WORKSPACE on``).

The post-process job hands each draft it made (only inbound messages get that job, and only the
sentiments of ``DRAFT_FOR`` get a draft) to ``consider_auto_send``.  The draft goes out on its
own when:

- its channel has a sender (email, LinkedIn; SMS has none);
- the model gave it a confidence (``ai_drafts.confidence``) of at least
  ``AUTO_SEND_MIN_CONFIDENCE``;
- nobody has answered the lead in the thread since its message (``drafts.newer_reply``).

The decision is taken once per draft however often the job runs: each outcome is a conditional
update from ``auto_send IS NULL``, and only the run that makes it acts.  ``skipped`` records the
reason.  ``scheduled`` records ``auto_send_at``, ``AUTO_SEND_DELAY_S`` from now by the database's
clock, and in the same transaction creates the draft's outbound message and its auto-send
``DRAFT_SEND`` job, due then (``drafts.schedule_send``).

Until then an operator can stop it: ``cancel_auto_send`` (``hookgate drafts cancel ID``,
``POST /api/drafts/{id}/auto-send/cancel``) records ``cancelled``, and pressing send takes it
over.  At send time the job checks again (``scheduler.drafts``), and the send's outcome settles
the decision: ``sent`` or ``unknown``.
"""

from __future__ import annotations

import logging

from gateway.runtime import Runtime
from scheduler.drafts import NO_SMS_SENDER, SENDABLE_CHANNELS, newer_reply, schedule_send
from sql import Database, Row

log = logging.getLogger("hookgate.jobs")

DECISIONS = ("scheduled", "skipped", "cancelled", "sent", "unknown")


async def consider_auto_send(runtime: Runtime, workspace: Row, draft_id: int) -> None:
    """Decide, once, whether the workspace's new draft sends itself; record why not."""
    if not workspace["auto_send"]:
        return
    db = runtime.db
    draft = await db.fetch_one("auto_send_candidate", id=draft_id)
    if draft is None or draft["auto_send"] is not None:
        return
    extra = {
        "draft_id": draft_id,
        "message_id": draft["message_id"],
        "workspace_id": workspace["id"],
    }
    reason = await _skip_reason(runtime, draft)
    if reason is not None:
        if await db.fetch_one("skip_auto_send", id=draft_id, reason=reason) is not None:
            log.info("auto-send skipped", extra=extra | {"reason": reason})
        return
    async with db.transaction() as conn:
        scheduled = await conn.fetch_one(
            "schedule_auto_send", id=draft_id, delay_s=runtime.settings.auto_send_delay_s
        )
        if scheduled is None:
            return  # another run decided first
        message_id = await schedule_send(
            conn, draft_id, now=runtime.clock(), max_attempts=runtime.settings.job_max_attempts
        )
    log.info(
        "auto-send scheduled",
        extra=extra
        | {"outbound_message_id": message_id, "auto_send_at": scheduled["auto_send_at"]},
    )


async def _skip_reason(runtime: Runtime, draft: Row) -> str | None:
    if draft["channel"] not in SENDABLE_CHANNELS:
        return NO_SMS_SENDER
    confidence = draft["confidence"]
    minimum = runtime.settings.auto_send_min_confidence
    if confidence is None:
        return "the model gave no confidence for the draft"
    if confidence < minimum:
        return f"confidence {confidence:.2f} is below AUTO_SEND_MIN_CONFIDENCE {minimum:.2f}"
    return await newer_reply(runtime.db, draft["id"])


async def cancel_auto_send(db: Database, draft_id: int, *, reason: str) -> Row | None:
    """Stop the draft's scheduled auto-send; the draft stays a draft that can still be sent by
    pressing send.  Returns the draft's auto-send state afterwards (``None``: no such draft):
    ``auto_send`` is ``cancelled`` when it is stopped, by this call or an earlier one; anything
    else says why there was nothing to stop (never scheduled, skipped, or too late: sending,
    sent)."""
    if await db.fetch_one("cancel_auto_send", id=draft_id, reason=reason) is not None:
        log.info("auto-send cancelled", extra={"draft_id": draft_id, "reason": reason})
    return await db.fetch_one("draft_auto_send_state", id=draft_id)


def not_cancellable(state: Row) -> str | None:
    """Why a cancel left this auto-send alone (``None``: it is cancelled)."""
    decision = state["auto_send"]
    if decision == "cancelled":
        return None
    if decision is None:
        return f"draft {state['id']} has no auto-send (auto-send was off when it was drafted)"
    if decision == "scheduled":
        return f"draft {state['id']} is {state['status']} already: too late to cancel"
    return f"draft {state['id']}'s auto-send is {decision} already" + (
        f" ({state['auto_send_reason']})" if state["auto_send_reason"] else ""
    )


async def list_drafts(
    db: Database, *, workspace_id: str | None, decision: str | None, limit: int
) -> list[Row]:
    """Drafts, newest first, with their auto-send decisions (``decision``: only that one)."""
    return await db.fetch_all(
        "list_drafts", workspace_id=workspace_id, auto_send=decision, limit=limit
    )


async def set_workspace_auto_send(db: Database, workspace_id: str, on: bool) -> bool:
    """Turn auto-send on or off for a workspace (False: no such workspace).  Off also stops
    the auto-sends already scheduled: each is skipped when it falls due."""
    return await db.fetch_one("set_workspace_auto_send", id=workspace_id, auto_send=on) is not None
