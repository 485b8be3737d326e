"""GoHighLevel (LeadConnector).

Two shapes arrive at one URL:

- the workflow "Webhook" action (a "Customer Replied" trigger): flat contact fields,
  ``message{type, body}``, ``workflow{id}``, ``customData{…}`` and no message id.  It is keyed
  ``webhook_dedupe_key = "ghl_sms:" + sha256`` of the stable fields (workspace, contact id,
  workflow id, date_created, customData Date/Time, the body normalised), never the receipt time.
  ``date_created`` is the contact's creation date, so only customData Date/Time (the event's
  ``{{right_now.…}}`` merge fields, README) tell two identical replies apart: a delivery without
  them carries the ``ghl_undated_workflow_sms`` notice (counted and shown per workspace).  A
  workflow that posts no message at all (a "tag added" or "payment received" workflow) is
  ignored;
- the marketplace ``InboundMessage`` / ``OutboundMessage`` events, keyed on ``messageId``
  (fallback ``emailMessageId``) in ``ghl_id``, else on ``"ghl_msg:" + sha256`` of the direction,
  conversation, time and body; direction comes from ``type`` (the docs' own examples get
  ``direction`` wrong).  Their ``webhookId`` is remembered to refuse replays.  A message type
  hookgate does not store (calls, voicemail, Facebook…) is ignored; an event with no message
  type is read as SMS or email when its counterpart is a phone number or an address, and
  quarantined otherwise.

Both shapes mark the workspace (``ghl_workflow_sms`` / ``ghl_marketplace_sms``) so that a
location sending one inbound SMS twice, once in each shape, is shown on the status page.

Auth: the URL token, plus ``X-GHL-Signature`` (Ed25519 over the raw body, base64) when the
workspace has a public key; a signed delivery whose ``timestamp`` is further than
``GHL_MAX_SKEW_S`` from now is refused.  GoHighLevel retries only a 429, so that is the answer
when the database is down.  Events for another location than the workspace's are ignored.
"""

from __future__ import annotations

import base64
import functools
import logging

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gateway.events import Channel, Event, Ignored, Lead, Message, ParseError
from gateway.notices import MARKETPLACE_SMS, UNDATED_WORKFLOW_SMS, WORKFLOW_SMS
from gateway.providers import fields
from gateway.providers.base import Delivery, Payload, Provider, token_auth

NAME = "ghl"

log = logging.getLogger("hookgate.providers.ghl")

_MARKETPLACE = {"InboundMessage": "inbound", "OutboundMessage": "outbound"}
# messageType / messageTypeString / messageTypeId (and the workflow's message.type) -> channel.
# Calls, voicemail, Facebook, Instagram, GMB and live chat are not channels hookgate stores.
_CHANNELS: dict[str, Channel] = {
    "SMS": "sms",
    "TYPE_SMS": "sms",
    "2": "sms",
    "EMAIL": "email",
    "TYPE_EMAIL": "email",
    "3": "email",
}


@functools.lru_cache(maxsize=256)
def public_key(configured: str) -> Ed25519PublicKey | None:
    """The workspace's key, given as PEM or as the raw 32-byte key in base64."""
    try:
        if "BEGIN" in configured:
            key = load_pem_public_key(configured.encode())
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(configured, validate=True))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, Ed25519PublicKey):
        log.error("the workspace's ghl_public_key is not an Ed25519 public key (PEM or base64)")
        return None
    return key


def authenticate(delivery: Delivery) -> bool:
    if not token_auth(delivery):
        return False
    configured = delivery.workspace["ghl_public_key"]
    if not configured:
        return True
    key = public_key(configured)
    signature = delivery.headers.get("x-ghl-signature", "")
    try:
        if key is None or not signature:
            return False
        key.verify(base64.b64decode(signature, validate=True), delivery.raw_body)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_payload(payload: Payload, delivery: Delivery) -> bool:
    """A signed delivery must be fresh.  Unsigned ones are not checked: their timestamp could be
    anything an attacker liked, so checking it would protect nothing."""
    if not delivery.workspace["ghl_public_key"]:
        return True
    sent = fields.timestamp(payload.get("timestamp"))
    if sent is None:
        return True
    skew = abs((delivery.received_at - sent).total_seconds())
    if skew > delivery.settings.ghl_max_skew_s:
        log.warning("stale GoHighLevel delivery refused", extra={"skew_s": round(skew)})
        return False
    return True


def parse(payload: Payload, delivery: Delivery) -> Event:
    kind = payload.get("type")
    location = fields.opt_text(payload, "locationId", "location.id")
    configured = delivery.workspace["ghl_location_id"]
    if configured and location and location != configured:
        return Ignored(f"{kind if isinstance(kind, str) else 'workflow'}:other_location")
    if isinstance(kind, str) and kind in _MARKETPLACE:
        return _marketplace(kind, payload, delivery)
    if "contact_id" in payload or "workflow" in payload:
        return _workflow(payload, delivery)
    if isinstance(kind, str) and kind:
        return Ignored(kind)
    raise ParseError("neither a marketplace event (type) nor a workflow webhook (contact_id)")


def _workflow(payload: Payload, delivery: Delivery) -> Event:
    custom = fields.opt_obj(payload, "customData")
    if "message" not in payload and "Message" not in custom:
        return Ignored("workflow:no_message")
    message_type = fields.opt_text(payload, "message.type")
    if message_type is not None and _CHANNELS.get(message_type.upper()) != "sms":
        return Ignored(f"workflow:{message_type}")
    body = fields.opt_text(payload, "message.body", "customData.Message")
    if body is None:
        raise ParseError("message.body (or customData.Message) is missing")
    contact_id = fields.opt_text(payload, "contact_id", "contactId")
    phone = fields.phone(fields.opt_text(payload, "phone", "customData.Phone Number"))
    date, time = fields.opt_text(custom, "Date"), fields.opt_text(custom, "Time")
    key = fields.digest(
        delivery.workspace["id"],
        contact_id,
        fields.opt_text(payload, "workflow.id"),
        fields.opt_text(payload, "date_created"),
        date,
        time,
        fields.normalised_body(body),
    )
    first, last = fields.name_parts(fields.opt_text(payload, "full_name"))
    undated = date is None or time is None
    return Message(
        event="workflow_sms",
        provider=NAME,
        channel="sms",
        direction="inbound",
        key_column="webhook_dedupe_key",
        key_value=f"ghl_sms:{key}",
        lead=_lead(
            phone=phone,
            contact_id=contact_id,
            email=fields.email(fields.opt_text(payload, "email")),
            first_name=fields.opt_text(payload, "first_name") or first,
            last_name=fields.opt_text(payload, "last_name") or last,
        ),
        body=body,
        # date_created is the contact's creation date and customData Date/Time carry no zone:
        # the receipt time is the best send time there is (and it never enters the key).
        sent_at=delivery.received_at,
        notices=(WORKFLOW_SMS, UNDATED_WORKFLOW_SMS) if undated else (WORKFLOW_SMS,),
    )


def _marketplace(kind: str, payload: Payload, delivery: Delivery) -> Event:
    direction = _MARKETPLACE[kind]
    counterpart = _first(payload.get("from" if direction == "inbound" else "to"))
    channel_name = fields.opt_text(payload, "messageType", "messageTypeString", "messageTypeId")
    if channel_name is not None:
        channel = _CHANNELS.get(channel_name.upper())
        if channel is None:  # a call, a voicemail, another channel: not a message hookgate keeps
            return Ignored(f"{kind}:{channel_name}")
    elif fields.phone(counterpart) is not None:
        channel = "sms"
    elif fields.email(counterpart) is not None:
        channel = "email"
    else:
        side = "from" if direction == "inbound" else "to"
        raise ParseError(f"no messageType, and {side} is neither a phone number nor an address")
    body = fields.opt_text(payload, "body")
    message_id = fields.opt_text(payload, "messageId", "emailMessageId")
    if message_id is not None:
        key_column, key_value = "ghl_id", message_id
    else:
        conversation = fields.opt_text(payload, "conversationId")
        added = fields.opt_text(payload, "dateAdded")
        if conversation is None or added is None:
            raise ParseError("messageId, emailMessageId or conversationId with dateAdded needed")
        # The direction is part of the key: an inbound and an outbound SMS with the same text
        # at the same time are two messages.
        digest = fields.digest(kind, conversation, added, fields.normalised_body(body))
        key_column, key_value = "webhook_dedupe_key", f"ghl_msg:{digest}"
    contact_id = fields.opt_text(payload, "contactId")
    if channel == "sms":
        lead = _lead(phone=fields.phone(counterpart), contact_id=contact_id)
    else:
        address = fields.email(counterpart)
        lead = Lead(
            email=address, ghl_contact_id=contact_id, key="email" if address else "ghl_contact_id"
        )
    webhook_id = fields.opt_text(payload, "webhookId")
    inbound_sms = channel == "sms" and direction == "inbound"
    return Message(
        event=kind,
        provider=NAME,
        channel=channel,
        direction=direction,  # type: ignore[arg-type]
        key_column=key_column,
        key_value=key_value,
        lead=lead,
        subject=fields.opt_text(payload, "subject") if channel == "email" else None,
        body=body,
        sent_at=fields.timestamp(payload.get("dateAdded")) or delivery.received_at,
        delivery_id=f"ghl:{webhook_id}" if webhook_id else None,
        notices=(MARKETPLACE_SMS,) if inbound_sms else (),
    )


def _lead(
    *,
    phone: str | None,
    contact_id: str | None,
    email: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
) -> Lead:
    """An SMS lead: by the GoHighLevel contact id (it outlives a changed or re-typed number),
    else by phone (E.164); the other is attached where no other lead holds it."""
    if phone is None and contact_id is None:
        raise ParseError("no lead: a phone number or a contact id is needed")
    return Lead(
        phone=phone,
        ghl_contact_id=contact_id,
        email=email,
        first_name=first_name,
        last_name=last_name,
        key="ghl_contact_id" if contact_id else "phone",
    )


def _first(value: object) -> str | None:
    """A string, or the first string of a list (an email's ``to`` is an array)."""
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str)), None)
    return value.strip() or None if isinstance(value, str) else None


PROVIDER = Provider(
    name=NAME,
    parse=parse,
    authenticate=authenticate,
    verify_payload=verify_payload,
    retry_status=429,
)
