"""Unipile (LinkedIn through Unipile's v1 webhooks).

``message_received`` is keyed on ``message_id`` (``unipile_message_id``).  It reports messages
sent as well as received: one whose sender is the account's own user (``is_sender``, or
``sender.attendee_provider_id`` equal to the owner's member id) is outbound, and its lead is the
other attendee.  The owner's id is ``account_info.user_id`` when the payload carries it, else the
workspace's ``unipile_own_id`` (learnt from the account API by the health check, or given at
``workspace create``): v1 payloads without either would make the owner's own messages inbound
leads.  Messages hookgate itself sent come back this way and are dedupe hits on the row already
stored.  The lead is found by the LinkedIn member id (``linkedin_id``).

Account status (``{"AccountStatus": {account_id, message}}``, the hosted-auth callback
``{status, account_id}`` and v2 ``account.status.*`` types) writes ``integration_health``.
Other accounts than the workspace's (when configured) and other networks are ignored.

Auth: the URL token, or the ``Unipile-Auth`` header chosen at webhook creation.  Unipile
retries anything but exactly 200, which is what every success is answered with, and a
quarantined delivery too (``quarantined: true``): it is kept, a re-send would add nothing.
"""

from __future__ import annotations

from typing import Any

from gateway.events import Event, Ignored, IntegrationStatus, Lead, Message, ParseError
from gateway.providers import fields
from gateway.providers.base import Delivery, Payload, Provider, token_or_header

NAME = "unipile"

# Account statuses (v1 upper case; v2 types end in the lower-case word).  CONNECTING and the
# unknown ones change nothing.
_CONNECTED = {"OK", "CREATION_SUCCESS", "RECONNECTED", "SYNC_SUCCESS", "RUNNING"}
_DISCONNECTED = {"CREDENTIALS", "ERROR", "ERRORED", "STOPPED", "DELETED", "DISCONNECTED", "PAUSED"}


def parse(payload: Payload, delivery: Delivery) -> Event:
    block = payload.get("AccountStatus")
    if isinstance(block, dict):
        return _account_status("AccountStatus", block, fields.opt_text(block, "message"), delivery)
    event = fields.opt_text(payload, "event", "type")
    if event is None and "account_id" in payload and "status" in payload:
        return _account_status(
            "account_callback", payload, fields.opt_text(payload, "status"), delivery
        )
    if event is None:
        raise ParseError("event (or AccountStatus) is missing")
    if event.startswith("account.status."):
        return _account_status(event, payload, event.rsplit(".", 1)[1], delivery)
    if event != "message_received":
        return Ignored(event)
    if _other_account(payload, delivery):
        return Ignored(f"{event}:other_account")
    network = fields.opt_text(payload, "account_type", "account_info.type")
    if network is not None and network.upper() != "LINKEDIN":
        return Ignored(f"{event}:{network}")
    own = fields.opt_text(payload, "account_info.user_id") or delivery.workspace["unipile_own_id"]
    sender = fields.opt_obj(payload, "sender")
    outbound = fields.opt_bool(payload, "is_sender") or (
        own is not None and fields.opt_text(sender, "attendee_provider_id") == own
    )
    lead = _counterpart(payload, own) if outbound else sender
    linkedin_id = fields.opt_text(lead, "attendee_provider_id")
    if linkedin_id is None:
        side = "another attendee's" if outbound else "sender."
        raise ParseError(f"no lead: {side} attendee_provider_id is needed")
    first, last = fields.name_parts(fields.opt_text(lead, "attendee_name"))
    return Message(
        event=event,
        provider=NAME,
        channel="linkedin",
        direction="outbound" if outbound else "inbound",
        key_column="unipile_message_id",
        key_value=fields.text(payload, "message_id"),
        lead=Lead(linkedin_id=linkedin_id, first_name=first, last_name=last, key="linkedin_id"),
        subject=fields.opt_text(payload, "subject"),
        body=fields.opt_text(payload, "message", "text"),
        sent_at=fields.timestamp(payload.get("timestamp")) or delivery.received_at,
        thread_id=fields.opt_text(payload, "chat_id"),
    )


def _counterpart(payload: Payload, own: str | None) -> dict[str, Any]:
    """The first attendee who is not the account's own user."""
    attendees = payload.get("attendees")
    for attendee in attendees if isinstance(attendees, list) else []:
        if isinstance(attendee, dict) and fields.opt_text(attendee, "attendee_provider_id") != own:
            return attendee
    return {}


def _other_account(block: Payload, delivery: Delivery) -> bool:
    configured = delivery.workspace["unipile_account_id"]
    account = fields.opt_text(block, "account_id")
    return bool(configured and account and account != configured)


def _account_status(event: str, block: Payload, status: str | None, delivery: Delivery) -> Event:
    if status is None:
        raise ParseError("the account status is missing")
    if _other_account(block, delivery):
        return Ignored(f"{event}:other_account")
    normalised = status.strip().upper()
    if normalised not in _CONNECTED and normalised not in _DISCONNECTED:
        return Ignored(f"{event}:{normalised}")
    return IntegrationStatus(
        event=event,
        integration=NAME,
        connected=normalised in _CONNECTED,
        reason=normalised,
    )


PROVIDER = Provider(
    name=NAME, parse=parse, authenticate=token_or_header("unipile-auth"), quarantine_status=200
)
