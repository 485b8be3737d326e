"""The one ingest path every provider shares.

A provider parser turns a delivery into a normalised event (``Message``, ``LeadUpdate`` or
``Ignored``).  ``ingest`` stores it: for a message, in one transaction, the lead is upserted,
the message inserted with ``ON CONFLICT DO NOTHING RETURNING id`` and its post-process job
enqueued.  A conflict is a dedupe hit: the existing row is looked up, its job re-enqueued with
reset semantics (a dead job goes back to pending; others are left alone) and the hit logged.
No outbound call and no model call happen here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any, Literal

import orjson

from sql import Connection, Database

log = logging.getLogger("hookgate.ingest")

Channel = Literal["email", "sms", "linkedin"]
Direction = Literal["inbound", "outbound"]

IDENTITY_COLUMNS = (
    "email_bison_reply_id",
    "inboxxia_scheduled_email_id",
    "ghl_id",
    "ai_draft_id",
    "unipile_message_id",
    "webhook_dedupe_key",
)

POST_PROCESS_JOB: dict[str, str] = {
    "email": "EMAIL_INBOUND_POST_PROCESS",
    "sms": "SMS_INBOUND_POST_PROCESS",
    "linkedin": "LINKEDIN_INBOUND_POST_PROCESS",
}


class ParseError(ValueError):
    """An authenticated, well-formed JSON object that the provider's parser cannot read.
    The message says what is wrong, for the 400 answer (and later the quarantine)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Lead:
    email: str | None = None
    phone: str | None = None
    linkedin_id: str | None = None
    ghl_contact_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    status: str | None = None
    interested: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    event: str
    provider: str
    channel: Channel
    direction: Direction
    key_column: str  # one of IDENTITY_COLUMNS
    key_value: str
    lead: Lead
    subject: str | None = None
    body: str | None = None
    sent_at: dt.datetime | None = None
    interested: bool = False

    def __post_init__(self) -> None:
        if self.key_column not in IDENTITY_COLUMNS:
            raise ValueError(f"unknown identity column {self.key_column!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class LeadUpdate:
    """Not a message (a lead-status event): the lead is updated, nothing else is stored."""

    event: str
    lead: Lead


@dataclasses.dataclass(frozen=True, slots=True)
class Ignored:
    """An event that is not a message (opens, tags, account events…)."""

    event: str


Event = Message | LeadUpdate | Ignored


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What the route answers with."""

    event: str
    message_id: int | None = None
    deduped: bool = False
    ignored: bool = False

    def answer(self) -> dict[str, Any]:
        if self.message_id is None:
            return {"success": True, "ignored": True, "event": self.event}
        return {
            "success": True,
            "deduped": self.deduped,
            "event": self.event,
            "message_id": self.message_id,
        }


async def ingest(
    db: Database, workspace_id: str, event: Event, *, now: dt.datetime, max_attempts: int
) -> Outcome:
    if isinstance(event, Ignored):
        return Outcome(event.event, ignored=True)
    if isinstance(event, LeadUpdate):
        async with db.transaction() as conn:
            await upsert_lead(conn, workspace_id, event.lead, now)
        return Outcome(event.event, ignored=True)
    return await store_message(db, workspace_id, event, now=now, max_attempts=max_attempts)


async def upsert_lead(conn: Connection, workspace_id: str, lead: Lead, now: dt.datetime) -> int:
    """Find or create the lead by the delivery's identity, race-safe (one upsert statement)."""
    if lead.email is None:
        raise ParseError("the delivery names no lead email")
    row = await conn.fetch_one(
        "upsert_lead_by_email",
        workspace_id=workspace_id,
        email=lead.email,
        first_name=lead.first_name,
        last_name=lead.last_name,
        company=lead.company,
        title=lead.title,
        status=lead.status,
        interested=lead.interested,
        now=now,
    )
    assert row is not None  # DO UPDATE always returns the row
    return int(row["id"])


async def store_message(
    db: Database, workspace_id: str, msg: Message, *, now: dt.datetime, max_attempts: int
) -> Outcome:
    keys = dict.fromkeys(IDENTITY_COLUMNS)
    keys[msg.key_column] = msg.key_value
    async with db.transaction() as conn:
        lead_id = await upsert_lead(conn, workspace_id, msg.lead, now)
        row = await conn.fetch_one(
            "insert_message",
            workspace_id=workspace_id,
            lead_id=lead_id,
            channel=msg.channel,
            direction=msg.direction,
            provider=msg.provider,
            event=msg.event,
            subject=msg.subject,
            body=msg.body,
            sent_at=msg.sent_at,
            interested=msg.interested,
            now=now,
            **keys,
        )
        deduped = row is None
        if row is None:
            row = await conn.fetch_one("find_message_by_key", workspace_id=workspace_id, **keys)
            if row is None:
                # The insert conflicted, yet no row has this key: it must have hit another
                # unique column.  Impossible with one key per message; say so loudly.
                raise RuntimeError(f"message insert conflicted without a row for {msg.key_column}")
            if msg.interested:
                await conn.execute("mark_message_interested", id=row["id"])
        message_id = int(row["id"])
        if msg.direction == "inbound":
            job_type = POST_PROCESS_JOB[msg.channel]
            await conn.execute(
                "enqueue_job",
                type=job_type,
                dedupe_key=f"{job_type}:{message_id}",
                workspace_id=workspace_id,
                message_id=message_id,
                payload=orjson.dumps({"event": msg.event}).decode(),
                max_attempts=max_attempts,
                now=now,
            )
    if deduped:
        log.info(
            "dedupe hit",
            extra={
                "event": msg.event,
                "key_name": msg.key_column,
                "key_value": msg.key_value,
                "workspace_id": workspace_id,
                "lead_id": lead_id,
                "message_id": message_id,
                "deduped": True,
            },
        )
    return Outcome(msg.event, message_id=message_id, deduped=deduped)
