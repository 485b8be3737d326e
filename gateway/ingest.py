"""The one ingest path every provider shares.

A provider parser turns a delivery into a normalised event (``Message``, ``LeadUpdate`` or
``Ignored``).  ``ingest`` stores it: for a message, in one transaction, the lead is upserted,
the message inserted with ``ON CONFLICT DO NOTHING RETURNING id`` and its post-process job
enqueued.  A conflict is a dedupe hit: the existing row is looked up, its job re-enqueued with
reset semantics (a dead job goes back to pending; others are left alone) and the hit logged.  A
hit that makes the message interested runs its job once more instead, whatever its state
(``rerun_job``), so that the interested lead is notified.
No outbound call and no model call happen here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any, Literal

import orjson

from gateway.integrations import record_integration_status
from sql import Connection, Database, DatabaseError, DatabaseUnavailable, Row

if TYPE_CHECKING:  # the providers import this module's event types
    from gateway.providers.base import Delivery, Payload, Provider

log = logging.getLogger("hookgate.ingest")

Channel = Literal["email", "sms", "linkedin"]
Direction = Literal["inbound", "outbound"]
LeadKey = Literal["email", "phone", "linkedin_id", "ghl_contact_id"]

# The columns that identify a lead, each unique per workspace.
LEAD_IDENTITIES: tuple[LeadKey, ...] = ("email", "phone", "linkedin_id", "ghl_contact_id")

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
    The message says what is wrong; the delivery is quarantined with it (``gateway.quarantine``)."""


class ReplayedDelivery(Exception):
    """A provider's per-delivery id (GoHighLevel's ``webhookId``) that already delivered another
    message: a replay, answered 409 with nothing stored."""


@dataclasses.dataclass(frozen=True, slots=True)
class Lead:
    """Who a delivery is about.  ``key`` names the channel's primary identity: the lead is found
    or created by it; the other identities given are attached only where no lead holds them."""

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
    key: LeadKey = "email"


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
    # The provider's id of this delivery (not of the message), remembered to refuse replays.
    delivery_id: str | None = None
    # The provider's conversation a reply must go to (Unipile chat_id), kept for sending drafts.
    thread_id: str | None = None
    # What this delivery says about the workspace's set-up (``gateway.notices``).
    notices: tuple[str, ...] = ()

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


@dataclasses.dataclass(frozen=True, slots=True)
class IntegrationStatus:
    """A provider reports on the workspace's own connection (Unipile ``AccountStatus``)."""

    event: str
    integration: str
    connected: bool
    reason: str | None = None


Event = Message | LeadUpdate | IntegrationStatus | Ignored


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What the route answers with."""

    event: str
    message_id: int | None = None
    deduped: bool = False
    ignored: bool = False
    job_due: bool = False  # a post-process job was enqueued (or revived, or re-run)
    notices: tuple[str, ...] = ()  # the message's, for the route to record once it is stored

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
    if isinstance(event, IntegrationStatus):
        await record_integration_status(
            db, workspace_id, event.integration, event.connected, event.reason, now
        )
        return Outcome(event.event, ignored=True)
    return await store_message(db, workspace_id, event, now=now, max_attempts=max_attempts)


async def upsert_lead(conn: Connection, workspace_id: str, lead: Lead, now: dt.datetime) -> int:
    """Find the lead by its primary identity; create or update it (one race-safe ``INSERT … ON
    CONFLICT DO UPDATE … RETURNING``) only when it is new or the delivery brings news.  Then
    attach the other identities the delivery names where the lead has none yet."""
    value = getattr(lead, lead.key)
    if value is None:
        raise ParseError(f"the delivery names no lead {lead.key.replace('_', ' ')}")
    keys: dict[str, str | None] = dict.fromkeys(LEAD_IDENTITIES)
    keys[lead.key] = value
    row = await conn.fetch_one("find_lead_by_key", workspace_id=workspace_id, **keys)
    if row is None or _news_for(row, lead):
        row = await _upsert(conn, workspace_id, lead, value, now)
    missing = {
        column: getattr(lead, column)
        for column in LEAD_IDENTITIES
        if row[column] is None and getattr(lead, column) is not None
    }
    if missing:
        await _attach_identities(conn, workspace_id, int(row["id"]), missing)
    return int(row["id"])


_LEAD_FIELDS = ("first_name", "last_name", "company", "title", "status")


def _news_for(row: Row, lead: Lead) -> bool:
    """Whether the delivery tells the stored lead anything new (a field it names with another
    value, or interest).  Most deliveries do not, and then the lead row is only read: the
    upsert would lock it until the commit, and every delivery of a busy lead would queue."""
    if lead.interested and not row["interested"]:
        return True
    return any(
        getattr(lead, field) is not None and getattr(lead, field) != row[field]
        for field in _LEAD_FIELDS
    )


async def _upsert(
    conn: Connection, workspace_id: str, lead: Lead, value: str, now: dt.datetime
) -> Row:
    row = await conn.fetch_one(
        f"upsert_lead_by_{lead.key}",
        workspace_id=workspace_id,
        value=value,
        first_name=lead.first_name,
        last_name=lead.last_name,
        company=lead.company,
        title=lead.title,
        status=lead.status,
        interested=lead.interested,
        now=now,
    )
    assert row is not None  # DO UPDATE always returns the row
    return row


async def _attach_identities(
    conn: Connection, workspace_id: str, lead_id: int, identities: dict[LeadKey, str]
) -> None:
    """Give the lead those identities no other lead holds.  The statement's NOT EXISTS guard is
    exact on SQLite (one writer) but not under concurrent PostgreSQL transactions: one that
    gives the same phone to another lead first makes it fail with a unique violation (or a
    deadlock).  The savepoint turns that into "the other lead keeps it"; the delivery goes on."""
    await conn.execute("savepoint_attach_identities")
    try:
        await conn.execute(
            "attach_lead_identities",
            id=lead_id,
            workspace_id=workspace_id,
            **{column: identities.get(column) for column in LEAD_IDENTITIES},
        )
    except DatabaseUnavailable:
        raise
    except DatabaseError as exc:
        await conn.execute("rollback_to_attach_identities")
        log.info(
            "lead identity kept by another lead",
            extra={"workspace_id": workspace_id, "lead_id": lead_id, "error": str(exc)},
        )


async def store_message(
    db: Database, workspace_id: str, msg: Message, *, now: dt.datetime, max_attempts: int
) -> Outcome:
    """One transaction.  The message goes in first: the copies of a storm then wait only for the
    first copy's commit (on the message's unique key) and, finding it stored, touch neither the
    lead row nor the job row — nothing for them to queue behind one by one."""
    keys = dict.fromkeys(IDENTITY_COLUMNS)
    keys[msg.key_column] = msg.key_value
    job_type = POST_PROCESS_JOB[msg.channel] if msg.direction == "inbound" else None
    revived = 0
    async with db.transaction() as conn:
        row = await conn.fetch_one(
            "insert_message",
            workspace_id=workspace_id,
            lead_id=None,
            channel=msg.channel,
            direction=msg.direction,
            provider=msg.provider,
            event=msg.event,
            subject=msg.subject,
            body=msg.body,
            sent_at=msg.sent_at,
            interested=msg.interested,
            delivery_id=msg.delivery_id,
            provider_thread_id=msg.thread_id,
            now=now,
            **keys,
        )
        deduped = row is None
        if row is not None:
            message_id = int(row["id"])
            if job_type is not None:
                await conn.execute(
                    "enqueue_job",
                    type=job_type,
                    dedupe_key=f"{job_type}:{message_id}",
                    workspace_id=workspace_id,
                    message_id=message_id,
                    payload=orjson.dumps({"event": msg.event}).decode(),
                    max_attempts=max_attempts,
                )
            # The lead last: its row stays locked until the commit, so hold it the shortest.
            lead_id = await upsert_lead(conn, workspace_id, msg.lead, now)
            await conn.execute("set_message_lead", id=message_id, lead_id=lead_id)
        else:
            row = await conn.fetch_one("find_message_by_key", workspace_id=workspace_id, **keys)
            if row is None and msg.delivery_id is not None:
                raise ReplayedDelivery(
                    f"delivery {msg.delivery_id} was already received with another message"
                )
            if row is None:
                # The insert conflicted, yet no row has this key: it must have hit another
                # unique column.  Impossible with one key per message; say so loudly.
                raise RuntimeError(f"message insert conflicted without a row for {msg.key_column}")
            message_id = int(row["id"])
            lead_id = row["lead_id"]
            # Issue 14 item 11 (h11-rerun): interest new to the message is news its job must
            # act on (the Slack notification), whether the job is pending, running or done:
            # `rerun_job` runs it once more after this commit.  Only the copy whose update turns
            # the message interested says so; any other hit keeps reset semantics.
            news = False
            if msg.interested:
                news = await conn.execute("mark_message_interested", id=message_id) > 0
                if lead_id is not None:
                    await conn.execute("mark_lead_interested", id=lead_id, now=now)
            if job_type is not None:
                revived = await conn.execute(
                    "rerun_job" if news else "requeue_dead_job",
                    dedupe_key=f"{job_type}:{message_id}",
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
    job_due = job_type is not None and (not deduped or revived > 0)
    return Outcome(msg.event, message_id=message_id, deduped=deduped, job_due=job_due)


async def ingest_delivery(
    db: Database, provider: Provider, payload: Payload, delivery: Delivery
) -> Outcome:
    """What a live delivery and a quarantine replay share: the provider's parser, then
    ``ingest``.  Raises ``ParseError`` when the parser, or the lead it names, cannot be read."""
    event = provider.parse(payload, delivery)
    outcome = await ingest(
        db,
        delivery.workspace["id"],
        event,
        now=delivery.received_at,
        max_attempts=delivery.settings.job_max_attempts,
    )
    if isinstance(event, Message) and event.notices:
        outcome = dataclasses.replace(outcome, notices=event.notices)
    return outcome
