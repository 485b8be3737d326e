"""The one ingest path every provider shares.

A provider parser turns a delivery into a normalised event (``gateway.events``: ``Message``,
``LeadUpdate``, ``IntegrationStatus`` or ``Ignored``).  ``ingest`` stores it: messages, lead
updates and integration reports join a group (``gateway.ingest_group``) stored in one
transaction with the deliveries that arrived meanwhile (``gateway.ingest_store``): the message
inserted with ``ON CONFLICT DO NOTHING RETURNING``, its post-process job enqueued, its lead
found or upserted.  A conflict is a dedupe hit: the stored message is answered, counted and its
job revived or re-run.  No outbound call and no model call happen here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import TYPE_CHECKING

from gateway.events import (
    Event,
    Ignored,
    IntegrationStatus,
    Lead,
    LeadUpdate,
    Message,
    Outcome,
    ParseError,
)
from gateway.ingest_group import groups_for
from gateway.ingest_store import LeadWrite, MessageWrite, StatusWrite, Write
from sql import Database

if TYPE_CHECKING:
    from gateway.providers.base import Delivery, Payload, Provider


async def ingest(
    db: Database, workspace_id: str, event: Event, *, now: dt.datetime, max_attempts: int
) -> Outcome:
    if isinstance(event, Ignored):
        return Outcome(event.event, ignored=True)
    if isinstance(event, IntegrationStatus):
        return await _stored(db, None, StatusWrite(workspace_id, event, now))
    if isinstance(event, LeadUpdate):
        return await _stored(db, event.lead, LeadWrite(workspace_id, event, now))
    return await store_message(db, workspace_id, event, now=now, max_attempts=max_attempts)


async def store_message(
    db: Database, workspace_id: str, msg: Message, *, now: dt.datetime, max_attempts: int
) -> Outcome:
    """Store one message with its group; answered once the group's transaction committed."""
    return await _stored(db, msg.lead, MessageWrite(workspace_id, msg, now, max_attempts))


async def _stored(db: Database, lead: Lead | None, write: Write) -> Outcome:
    if lead is not None and getattr(lead, lead.key) is None:
        raise ParseError(f"the delivery names no lead {lead.key.replace('_', ' ')}")
    result = await groups_for(db).submit(write)
    if isinstance(result, Exception):
        raise result
    assert isinstance(result, Outcome)
    return result


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
