"""SmartLead.

Flat payloads with ``event_type``.  ``EMAIL_REPLY`` is keyed ``smartlead:<reply Message-ID>``
(``reply_message.message_id``, falling back to the legacy top-level ``message_id``, and only as a
last resort to ``stats_id`` with ``event_timestamp``: several replies to one email share a
``stats_id``, so it is never a key alone).  ``EMAIL_SENT`` / ``FIRST_EMAIL_SENT`` are keyed
``smartlead:sent:<stats_id>`` (one send, one key, so the pair is stored once), ``EMAIL_BOUNCE``
``smartlead:<bounce Message-ID>``.  ``LEAD_CATEGORY_UPDATED`` and ``LEAD_UNSUBSCRIBED`` update the
lead's status and store no message.  All keys live in ``webhook_dedupe_key``.  The lead's name
comes from ``lead_name``, or from ``to_name`` only when ``to_email`` is the lead's own address
(on a reply it can be the workspace's sender).

Auth: the URL token, and the ``secret_key`` SmartLead puts in every body, which must match the
workspace's SmartLead secret (compared in constant time) when one is configured.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from gateway.events import Event, Ignored, Lead, LeadUpdate, Message, ParseError
from gateway.providers import fields
from gateway.providers.base import Delivery, Payload, Provider
from gateway.workspaces import secret_matches

NAME = "smartlead"


@dataclasses.dataclass(frozen=True, slots=True)
class _Spec:
    direction: Literal["inbound", "outbound"]
    prefix: str  # of the webhook_dedupe_key
    ids: tuple[str, ...]  # where the message id is, best first
    bodies: tuple[str, ...]
    times: tuple[str, ...]


_SENT = _Spec(
    "outbound",
    "smartlead:sent:",
    ("stats_id", "sent_message.message_id", "message_id"),
    ("sent_message.text", "sent_message.html", "sent_message_body", "custom_email_message"),
    ("sent_message.time", "event_timestamp", "time_sent"),
)
_MESSAGES = {
    "EMAIL_REPLY": _Spec(
        "inbound",
        "smartlead:",
        ("reply_message.message_id", "message_id"),
        ("reply_message.text", "reply_message.html", "reply_body", "preview_text"),
        ("reply_message.time", "event_timestamp", "time_replied"),
    ),
    "EMAIL_SENT": _SENT,
    "FIRST_EMAIL_SENT": _SENT,
    "EMAIL_BOUNCE": _Spec(
        "inbound",
        "smartlead:",
        ("bounce_message.message_id", "bounce_reply_message_id"),
        ("bounce_message.text", "bounce_message.html", "bounce_reply_email_preview"),
        ("bounce_message.time", "event_timestamp"),
    ),
}
# Where the lead's address is: the original lead, not a colleague who replied in their stead.
_LEAD_EMAIL = (
    "sl_lead_email",
    "leadCorrespondence.targetLeadEmail",
    "to_email",
    "lead_email",
    "lead_data.email",
)


def verify_payload(payload: Payload, delivery: Delivery) -> bool:
    configured = delivery.workspace["smartlead_secret_hash"]
    return not configured or secret_matches(fields.opt_text(payload, "secret_key"), configured)


def parse(payload: Payload, delivery: Delivery) -> Event:
    event_type = fields.text(payload, "event_type").upper()
    if event_type == "LEAD_CATEGORY_UPDATED":
        category = fields.opt_text(payload, "lead_category.new_name", "category")
        interested = (category or "").lower() == "interested"
        return LeadUpdate(event_type, _lead(payload, status=category, interested=interested))
    if event_type == "LEAD_UNSUBSCRIBED":
        return LeadUpdate(event_type, _lead(payload, status="unsubscribed"))
    spec = _MESSAGES.get(event_type)
    if spec is None:
        return Ignored(event_type)
    message_id = fields.opt_text(payload, *spec.ids)
    if message_id is not None:
        key = spec.prefix + message_id
    else:
        stats_id = fields.opt_text(payload, "stats_id")
        sent = fields.opt_text(payload, "event_timestamp")
        if stats_id is None or sent is None:
            raise ParseError(f"{' or '.join(spec.ids)} (or stats_id with event_timestamp) needed")
        key = f"smartlead:{event_type.lower()}:{stats_id}:{sent}"
    return Message(
        event=event_type,
        provider=NAME,
        channel="email",
        direction=spec.direction,
        key_column="webhook_dedupe_key",
        key_value=key,
        lead=_lead(payload),
        subject=fields.opt_text(payload, "subject", "custom_subject"),
        body=fields.opt_text(payload, *spec.bodies),
        sent_at=fields.opt_timestamp(payload, *spec.times) or delivery.received_at,
    )


def _lead(payload: Payload, *, status: str | None = None, interested: bool = False) -> Lead:
    address = fields.email(fields.opt_text(payload, *_LEAD_EMAIL))
    if address is None:
        raise ParseError(f"no lead email: one of {', '.join(_LEAD_EMAIL)} is needed")
    # to_name names whoever to_email is: the lead on a send, possibly our own sender on a reply.
    addressed_to_lead = fields.email(fields.opt_text(payload, "to_email")) == address
    name = fields.opt_text(payload, "lead_name") or (
        fields.opt_text(payload, "to_name") if addressed_to_lead else None
    )
    first, last = fields.name_parts(name)
    return Lead(
        email=address,
        first_name=fields.opt_text(payload, "lead_data.first_name") or first,
        last_name=fields.opt_text(payload, "lead_data.last_name") or last,
        company=fields.opt_text(payload, "lead_data.company_name"),
        status=status,
        interested=interested,
    )


PROVIDER = Provider(name=NAME, parse=parse, verify_payload=verify_payload)
