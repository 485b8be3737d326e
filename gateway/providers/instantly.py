"""Instantly (API v2 webhooks).

Flat payloads with ``event_type`` and the lead's custom fields merged at top level: unknown keys
are normal, spelt as the workspace chose (``firstName``, ``First_name`` and ``first_name`` are
read as one field).  There is no event id.  ``timestamp`` is fixed per occurrence (not per
retry) and ``email_id`` names an email that can draw several replies, so replies are keyed
``instantly:reply:<email_id>:<timestamp>`` and sends ``instantly:email_sent:<email_id>``.
Without them the key is ``instantly:<reply|email>:`` + a hash of the lead, subject, normalised
body, ``timestamp`` and ``step``: a later follow-up step with the same subject and no body is
another message.

``reply_received`` and ``auto_reply_received`` share their keys: both classify an inbound email,
so one email reported as both (the same ``email_id`` and ``timestamp``) is one message, stored
under the event that came first; two emails are never one, their timestamps differ.

``lead_*`` events (``lead_interested``, …) update the lead's status and store no message.
Legacy names ``type``, ``contact_email`` and ``contact_name`` are read as aliases.

Auth: the URL token (``?token=`` or Bearer), or the ``X-Hookgate-Secret`` header set at webhook
creation, compared with the workspace's Instantly secret.
"""

from __future__ import annotations

from gateway.events import Event, Ignored, Lead, LeadUpdate, Message, ParseError
from gateway.providers import fields
from gateway.providers.base import Delivery, Payload, Provider, token_or_header

NAME = "instantly"

# event_type -> (direction, body fields best first, subject field and key prefix)
_MESSAGES = {
    "reply_received": ("inbound", ("reply_text", "reply_html", "reply_text_snippet"), "reply"),
    "auto_reply_received": ("inbound", ("reply_text", "reply_html", "reply_text_snippet"), "reply"),
    "email_sent": ("outbound", ("email_text", "email_html"), "email"),
}
# Lead fields, by their name with case, "_", "-" and spaces ignored (``fields.loose``).
_FIRST_NAME = ("firstname", "leadfirstname")
_LAST_NAME = ("lastname", "leadlastname")
_COMPANY = ("companyname", "company")
_TITLE = ("jobtitle",)


def parse(payload: Payload, delivery: Delivery) -> Event:
    event_type = fields.text(payload, "event_type", "type")
    kind = event_type.lower()
    if kind.startswith("lead_"):
        status = kind.removeprefix("lead_")
        return LeadUpdate(event_type, _lead(payload, status, interested=status == "interested"))
    spec = _MESSAGES.get(kind)
    if spec is None:
        return Ignored(event_type)
    direction, body_fields, prefix = spec
    lead = _lead(payload)
    subject = fields.opt_text(payload, f"{prefix}_subject")
    body = fields.opt_text(payload, *body_fields)
    email_id = fields.opt_text(payload, "email_id")
    sent = fields.opt_text(payload, "timestamp")
    if email_id is not None and kind == "email_sent":
        key = f"instantly:{kind}:{email_id}"
    elif email_id is not None and sent is not None:
        key = f"instantly:{prefix}:{email_id}:{sent}"
    else:
        step = fields.opt_text(payload, "step")
        digest = fields.digest(lead.email, subject, fields.normalised_body(body), sent, step)
        key = f"instantly:{prefix}:{digest}"
    return Message(
        event=kind,
        provider=NAME,
        channel="email",
        direction=direction,  # type: ignore[arg-type]
        key_column="webhook_dedupe_key",
        key_value=key,
        lead=lead,
        subject=subject,
        body=body,
        sent_at=fields.timestamp(payload.get("timestamp")) or delivery.received_at,
    )


def _lead(payload: Payload, status: str | None = None, *, interested: bool = False) -> Lead:
    address = fields.email(fields.opt_text(payload, "lead_email", "contact_email", "email"))
    if address is None:
        raise ParseError("no lead email: lead_email (or contact_email) is needed")
    first, last = fields.name_parts(fields.opt_text(payload, "contact_name"))
    merged = fields.loose(payload)
    return Lead(
        email=address,
        first_name=fields.opt_text(merged, *_FIRST_NAME) or first,
        last_name=fields.opt_text(merged, *_LAST_NAME) or last,
        company=fields.opt_text(merged, *_COMPANY),
        title=fields.opt_text(merged, *_TITLE),
        status=status,
        interested=interested,
    )


PROVIDER = Provider(name=NAME, parse=parse, authenticate=token_or_header("x-hookgate-secret"))
