"""EmailBison (also Inboxxia and other white-label instances).

Envelope ``{event: {type, …}, data: {reply | scheduled_email | lead | …}}``; event types are
compared case-insensitively.  Replies key on ``data.reply.id`` (``email_bison_reply_id``), campaign
sends on ``data.scheduled_email.id`` (``inboxxia_scheduled_email_id``).  ``LEAD_INTERESTED`` repeats
the ``reply.id`` of the earlier ``LEAD_REPLIED``: stored once, it marks the lead and message
interested whichever arrives first.  No signature exists: the URL token is the only auth.
"""

from __future__ import annotations

from gateway.events import Event, Ignored, Lead, Message, ParseError
from gateway.providers import fields
from gateway.providers.base import Delivery, Payload, Provider

NAME = "emailbison"

# event type -> (direction, the block holding the message, identity column)
_MESSAGE_EVENTS = {
    "LEAD_REPLIED": ("inbound", "reply", "email_bison_reply_id"),
    "LEAD_INTERESTED": ("inbound", "reply", "email_bison_reply_id"),
    "UNTRACKED_REPLY_RECEIVED": ("inbound", "reply", "email_bison_reply_id"),
    "EMAIL_BOUNCED": ("inbound", "reply", "email_bison_reply_id"),
    "MANUAL_EMAIL_SENT": ("outbound", "reply", "email_bison_reply_id"),
    "EMAIL_SENT": ("outbound", "scheduled_email", "inboxxia_scheduled_email_id"),
}


def parse(payload: Payload, delivery: Delivery) -> Event:
    envelope = fields.obj(payload, "event")
    event_type = fields.text(envelope, "type", where="event.").upper()
    spec = _MESSAGE_EVENTS.get(event_type)
    if spec is None:
        return Ignored(event_type)
    direction, block_name, key_column = spec
    data = fields.obj(payload, "data")
    block = fields.obj(data, block_name, where="data.")
    interested = event_type == "LEAD_INTERESTED" or fields.opt_bool(block, "interested")
    lead = _lead(data, block, direction, interested and direction == "inbound")
    if block_name == "reply":
        subject = fields.opt_text(block, "email_subject", "subject")
        body = fields.opt_text(block, "text_body", "html_body", "body")
        sent_at = fields.timestamp(block.get("date_received") or block.get("created_at"))
    else:
        subject = fields.opt_text(block, "email_subject", "subject")
        body = fields.opt_text(block, "email_body", "body")
        sent_at = fields.timestamp(block.get("sent_at"))
    return Message(
        event=event_type,
        provider=NAME,
        channel="email",
        direction=direction,  # type: ignore[arg-type]
        key_column=key_column,
        key_value=fields.text(block, "id", where=f"data.{block_name}."),
        lead=lead,
        subject=subject,
        body=body,
        sent_at=sent_at or delivery.received_at,
        interested=interested,
    )


def _lead(data: Payload, block: Payload, direction: str, interested: bool) -> Lead:
    lead = fields.opt_obj(data, "lead")
    address = fields.email(fields.opt_text(lead, "email"))
    if address is None and direction == "inbound":
        # An untracked reply has no lead block: the lead is whoever wrote it.
        address = fields.email(fields.opt_text(block, "from_email_address", "from_email"))
    if address is None and direction == "outbound":
        address = fields.email(
            fields.opt_text(block, "primary_to_email_address", "to_email_address", "to_email")
        )
        if address is None and isinstance(block.get("to"), list) and block["to"]:
            address = fields.email(fields.opt_text(block["to"][0], "address"))
    if address is None:
        raise ParseError("no lead email: data.lead.email or the reply's sender address is needed")
    name = fields.opt_text(block, "from_name") if not lead else None
    first, _, last = (name or "").partition(" ")
    return Lead(
        email=address,
        first_name=fields.opt_text(lead, "first_name") or first or None,
        last_name=fields.opt_text(lead, "last_name") or last or None,
        company=fields.opt_text(lead, "company"),
        title=fields.opt_text(lead, "title"),
        interested=interested,
    )


PROVIDER = Provider(name=NAME, parse=parse)
