"""The normalised events a provider's parser turns a delivery into, and what the route answers.

``gateway.ingest`` routes them to the store; ``gateway.ingest_store`` writes them in groups.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Literal

Channel = Literal["email", "sms", "linkedin"]
Direction = Literal["inbound", "outbound"]
LeadKey = Literal["email", "phone", "linkedin_id", "ghl_contact_id"]

# The columns that identify a lead, each unique per workspace.
LEAD_IDENTITIES: tuple[LeadKey, ...] = ("email", "phone", "linkedin_id", "ghl_contact_id")

# The message identity columns a delivery is keyed on (text, each unique per workspace).
MESSAGE_KEYS = (
    "email_bison_reply_id",
    "inboxxia_scheduled_email_id",
    "ghl_id",
    "unipile_message_id",
    "webhook_dedupe_key",
)
# All of a message's identity columns: the delivery keys and the draft a send came from
# (``ai_draft_id``, written by scheduler/drafts.py).
IDENTITY_COLUMNS = (*MESSAGE_KEYS[:3], "ai_draft_id", *MESSAGE_KEYS[3:])

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
    key_column: str  # one of MESSAGE_KEYS
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
        if self.key_column not in MESSAGE_KEYS:
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
    job_due: bool = False  # a post-process job was enqueued (or a dead one revived)
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
