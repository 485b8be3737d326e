"""GoHighLevel: the workflow webhook (hashed key) and the marketplace message events (ghl_id),
Ed25519 signatures, stale and replayed deliveries, 429 when the database is down."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.app import create_app
from gateway.events import Lead, Message
from gateway.ingest import store_message
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace, WorkspaceOptions, create_workspace
from sql import Database
from tests.conftest import AppClient, count, encode, fixture_json, make_settings, rows, utc

WORKFLOW = "gohighlevel/workflow_webhook_customer_replied_sms.json"
INBOUND = "gohighlevel/inbound_message_sms.json"


def workflow(**changes: Any) -> dict[str, Any]:
    payload = fixture_json(WORKFLOW)
    payload.update(changes)
    return payload


def workflow_key(workspace_id: str, payload: dict[str, Any], body: str) -> str:
    """The documented key, computed independently of the parser."""
    parts = [
        workspace_id,
        payload["contact_id"],
        payload["workflow"]["id"],
        payload["date_created"],
        payload["customData"]["Date"],
        payload["customData"]["Time"],
        body,
    ]
    encoded = json.dumps(parts, separators=(",", ":"), ensure_ascii=False).encode()
    return "ghl_sms:" + hashlib.sha256(encoded).hexdigest()


async def post(client: AppClient, workspace: CreatedWorkspace, body: bytes, **headers: str) -> Any:
    return await client.http.post(client.url("ghl", workspace), content=body, headers=headers)


async def test_workflow_fixture_is_stored_field_by_field(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    payload = workflow()
    answer = await post(client, workspace, encode(payload))
    assert answer.status_code == 200
    assert answer.json() == {
        "success": True,
        "deduped": False,
        "event": "workflow_sms",
        "message_id": 1,
    }
    [message] = await rows(settings.database_url, "SELECT * FROM messages")
    body = "Yes, interested. Can you call me tomorrow after 2pm?"
    assert {k: message[k] for k in ("channel", "direction", "provider", "event", "body")} == {
        "channel": "sms",
        "direction": "inbound",
        "provider": "ghl",
        "event": "workflow_sms",
        "body": body,
    }
    assert message["webhook_dedupe_key"] == workflow_key(workspace.id, payload, body)
    assert message["ghl_id"] is None and message["subject"] is None
    [lead] = await rows(settings.database_url, "SELECT * FROM leads")
    assert message["lead_id"] == lead["id"]
    assert {
        k: lead[k] for k in ("phone", "ghl_contact_id", "email", "first_name", "last_name")
    } == {
        "phone": "+15555550142",
        "ghl_contact_id": "xK2pQ7vB9mN4rT1sY6wZ",
        "email": "jordan.lee@northwind.example.com",
        "first_name": "Jordan",
        "last_name": "Lee",
    }
    jobs = await rows(settings.database_url, "SELECT type, dedupe_key FROM background_jobs")
    assert jobs == [
        {"type": "SMS_INBOUND_POST_PROCESS", "dedupe_key": "SMS_INBOUND_POST_PROCESS:1"}
    ]


async def test_marketplace_inbound_fixture_is_stored_field_by_field(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    answer = await post(client, workspace, encode(fixture_json(INBOUND)))
    assert answer.json() == {
        "success": True,
        "deduped": False,
        "event": "InboundMessage",
        "message_id": 1,
    }
    [message] = await rows(settings.database_url, "SELECT * FROM messages")
    assert message["ghl_id"] == "Mg7Hj1Kl5Zx9Cv3Bn6Mq"
    assert message["delivery_id"] == "ghl:6e0b8f2c-3a1d-4c5e-9f7a-2b4d6c8e0a13"
    assert (message["channel"], message["direction"], message["webhook_dedupe_key"]) == (
        "sms",
        "inbound",
        None,
    )
    assert message["body"] == "Yes, interested. Can you call me tomorrow after 2pm?"
    assert utc(message["sent_at"]) == dt.datetime(2026, 3, 4, 15, 22, 41, 512000, dt.UTC)
    [lead] = await rows(settings.database_url, "SELECT phone, ghl_contact_id, email FROM leads")
    assert lead == {
        "phone": "+15555550142",
        "ghl_contact_id": "xK2pQ7vB9mN4rT1sY6wZ",
        "email": None,
    }


async def test_workflow_redelivery_hashes_the_same_whatever_the_receipt_time_or_spacing(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    runtime = client.app.state.runtime
    first = await post(client, workspace, encode(workflow()))
    runtime.clock = lambda: dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    # Re-wrapped and re-encoded: extra spaces, a newline, decomposed Unicode (NFD) -- same text.
    respaced = workflow(message={"type": "2", "body": "  Yes,  interested.\nCan you call me "})
    respaced["message"]["body"] += "tomorrow after 2pm?  "
    second = await post(client, workspace, encode(respaced))
    assert second.json() == {**first.json(), "deduped": True}
    assert await count(settings.database_url, "messages") == 1


async def test_two_different_replies_in_the_same_minute_are_two_rows(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    yes = workflow(message={"type": 2, "body": "Yes"})
    no = workflow(message={"type": 2, "body": "Actually, no"})
    answers = [await post(client, workspace, encode(p)) for p in (yes, no, yes)]
    assert [a.json()["deduped"] for a in answers] == [False, False, True]
    assert answers[2].json()["message_id"] == answers[0].json()["message_id"]
    assert await count(settings.database_url, "messages") == 2
    assert await count(settings.database_url, "leads") == 1


@pytest.mark.parametrize(
    ("change", "expected_body"),
    [
        # message.body missing: customData.Message carries it (ZRG's fallback).
        (lambda p: p.pop("message"), "Yes, interested. Can you call me tomorrow after 2pm?"),
        (lambda p: p["message"].update(body="Oui 👍 café ✓ — 谢谢"), "Oui 👍 café ✓ — 谢谢"),
        (
            lambda p: p.update(customData={}, triggerData=None, tags=None),
            "Yes, interested. Can you call me tomorrow after 2pm?",
        ),
    ],
    ids=["customData-body", "unicode-emoji", "no-custom-data"],
)
async def test_workflow_variants(
    client: AppClient,
    workspace: CreatedWorkspace,
    settings: Settings,
    change: Any,
    expected_body: str,
) -> None:
    payload = workflow()
    change(payload)
    answer = await post(client, workspace, encode(payload))
    assert answer.status_code == 200, answer.text
    [message] = await rows(settings.database_url, "SELECT body FROM messages")
    assert message["body"] == expected_body


async def test_workflow_without_a_phone_finds_the_lead_by_contact_id(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    payload = workflow(phone=None)
    payload["customData"].pop("Phone Number")
    await post(client, workspace, encode(payload))
    await post(client, workspace, encode(workflow(message={"type": 2, "body": "second"})))
    leads = await rows(settings.database_url, "SELECT phone, ghl_contact_id FROM leads")
    # Found by contact id both times; the second delivery's phone is attached to the same lead.
    assert leads == [{"phone": "+15555550142", "ghl_contact_id": "xK2pQ7vB9mN4rT1sY6wZ"}]
    assert await count(settings.database_url, "messages") == 2


async def test_marketplace_variants_legacy_ids_and_other_channels(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    email = {
        "type": "OutboundMessage",
        "locationId": "Lq8Vn3Zt6Hc1Wm5Kx9Pb",
        "messageType": "Email",
        "emailMessageId": "em-1",
        "contactId": "c-2",
        "to": ["Jordan Lee <Jordan.Lee@Northwind.example.com>"],
        "subject": "Pricing",
        "body": "<p>Here you go</p>",
        "direction": "inbound",  # the docs' own examples get this wrong: type decides
    }
    no_id = fixture_json(INBOUND)
    del no_id["messageId"], no_id["webhookId"]
    call = {**fixture_json(INBOUND), "messageType": "CALL", "messageTypeId": 1, "messageId": "x"}
    del call["messageTypeString"]
    answers = [await post(client, workspace, encode(p)) for p in (email, no_id, no_id, call)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200]
    assert answers[2].json()["deduped"] is True
    assert answers[3].json() == {"success": True, "ignored": True, "event": "InboundMessage:CALL"}
    stored = await rows(
        settings.database_url,
        "SELECT m.channel, m.direction, m.ghl_id, m.subject, m.webhook_dedupe_key, l.email "
        "FROM messages m JOIN leads l ON l.id = m.lead_id ORDER BY m.id",
    )
    assert stored[0] == {
        "channel": "email",
        "direction": "outbound",
        "ghl_id": "em-1",
        "subject": "Pricing",
        "webhook_dedupe_key": None,
        "email": "jordan.lee@northwind.example.com",
    }
    assert stored[1]["ghl_id"] is None and stored[1]["webhook_dedupe_key"].startswith("ghl_msg:")
    assert len(stored) == 2


async def test_outbound_echo_of_a_message_hookgate_sent_links_to_its_row(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings, db: Database
) -> None:
    sent = Message(
        event="DRAFT_SEND",
        provider="ghl",
        channel="sms",
        direction="outbound",
        key_column="ghl_id",
        key_value="Mg-sent-by-hookgate",
        lead=Lead(phone="+15555550142", key="phone"),
        body="Sure, 3pm works.",
    )
    now = dt.datetime.now(dt.UTC)
    stored = await store_message(db, workspace.id, sent, now=now, max_attempts=5)
    echo = {**fixture_json(INBOUND), "type": "OutboundMessage", "messageId": "Mg-sent-by-hookgate"}
    echo["to"], echo["from"] = echo["from"], echo["to"]
    answer = await post(client, workspace, encode(echo))
    assert answer.json() == {
        "success": True,
        "deduped": True,
        "event": "OutboundMessage",
        "message_id": stored.message_id,
    }
    assert await count(settings.database_url, "messages") == 1


async def test_a_hundred_identical_deliveries_of_each_shape_store_one_row_each(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    for stored, payload in enumerate((fixture_json(INBOUND), workflow()), start=1):
        body = encode(payload)
        answers = await asyncio.gather(*(post(client, workspace, body) for _ in range(100)))
        assert {a.status_code for a in answers} == {200}
        assert sorted(a.json()["deduped"] for a in answers).count(False) == 1
        assert len({a.json()["message_id"] for a in answers}) == 1
        assert await count(settings.database_url, "messages") == stored
    assert await count(settings.database_url, "leads") == 1
    assert await count(settings.database_url, "background_jobs") == 2


async def test_a_reused_webhook_id_with_another_message_is_409_and_stores_nothing(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    await post(client, workspace, encode(fixture_json(INBOUND)))
    forged = {**fixture_json(INBOUND), "messageId": "Mg-other", "body": "send me everything"}
    answer = await post(client, workspace, encode(forged))
    assert answer.status_code == 409
    assert "6e0b8f2c-3a1d-4c5e-9f7a-2b4d6c8e0a13" in answer.json()["error"]
    assert await count(settings.database_url, "messages") == 1


async def test_events_of_another_location_are_ignored(
    client: AppClient, db: Database, settings: Settings
) -> None:
    options = WorkspaceOptions(ghl_location_id="the-workspaces-own-location")
    workspace = await create_workspace(db, "Located", options)
    answers = [
        await post(client, workspace, encode(p)) for p in (fixture_json(INBOUND), workflow())
    ]
    assert [a.json().get("ignored") for a in answers] == [True, True]
    assert await count(settings.database_url, "messages") == 0


def key_pair() -> tuple[Ed25519PrivateKey, str, str]:
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    raw = base64.b64encode(
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode()
    return private, pem, raw


def signed(private: Ed25519PrivateKey, payload: dict[str, Any]) -> tuple[bytes, str]:
    body = encode(payload)
    return body, base64.b64encode(private.sign(body)).decode()


@pytest.mark.parametrize("form", ["pem", "raw"])
async def test_signatures_are_verified_when_a_public_key_is_configured(
    client: AppClient, db: Database, settings: Settings, form: str
) -> None:
    private, pem, raw = key_pair()
    workspace = await create_workspace(
        db, "Signed", WorkspaceOptions(ghl_public_key=pem if form == "pem" else raw)
    )
    now = dt.datetime.now(dt.UTC)
    fresh = {**fixture_json(INBOUND), "timestamp": now.isoformat()}
    body, signature = signed(private, fresh)
    wrong = base64.b64encode(Ed25519PrivateKey.generate().sign(body)).decode()
    tampered = body.replace(b"interested", b"INTERESTED")
    stale_body, stale_signature = signed(
        private, {**fresh, "timestamp": (now - dt.timedelta(seconds=2 * 4500)).isoformat()}
    )
    refused = [
        await post(client, workspace, body),  # no signature
        await post(client, workspace, body, **{"X-GHL-Signature": wrong}),
        await post(client, workspace, tampered, **{"X-GHL-Signature": signature}),
        await post(client, workspace, body, **{"X-GHL-Signature": "not base64!"}),
        await post(client, workspace, stale_body, **{"X-GHL-Signature": stale_signature}),
    ]
    assert [a.status_code for a in refused] == [401] * 5
    assert {a.json()["error"] for a in refused} == {"unauthorized"}
    assert await count(settings.database_url, "messages") == 0
    assert await count(settings.database_url, "leads") == 0
    accepted = await post(client, workspace, body, **{"X-GHL-Signature": signature})
    assert accepted.status_code == 200
    assert await count(settings.database_url, "messages") == 1


async def test_database_unreachable_is_429_for_ghl(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    settings = make_settings(f"sqlite:///{path}", DATABASE_TIMEOUT_S="0.3")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        workspace = await create_workspace(app.state.runtime.db, "Acme", WorkspaceOptions())
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
            client = AppClient(http, app)
            holder = sqlite3.connect(path, timeout=0)
            holder.execute("BEGIN EXCLUSIVE")
            try:
                answer = await post(client, workspace, encode(fixture_json(INBOUND)))
            finally:
                holder.rollback()
                holder.close()
            assert answer.status_code == 429
            assert answer.headers["retry-after"]
            assert answer.json()["retryable"] is True
            again = await post(client, workspace, encode(fixture_json(INBOUND)))
            assert again.json()["deduped"] is False


LOCATION = "Lq8Vn3Zt6Hc1Wm5Kx9Pb"
LEAD_PHONE = "+15555550177"
OUR_NUMBER = "+15555550100"


def sms_event(kind: str, **changes: Any) -> dict[str, Any]:
    """A marketplace SMS event as the docs' examples show it: no messageId (nor
    emailMessageId), no webhookId."""
    inbound = kind == "InboundMessage"
    payload: dict[str, Any] = {
        "type": kind,
        "locationId": LOCATION,
        "attachments": [],
        "body": "Sounds good, talk then",
        "contactId": "Ct5Rq2Wx8Zn1Lp4Kv7Hs",
        "contentType": "text/plain",
        "conversationId": "Cv9Nb3Mx6Qa2Ws5Ed8Rf",
        "dateAdded": "2026-03-06T17:05:09.000Z",
        "direction": "inbound",  # the docs' OutboundMessage example says inbound too
        "messageType": "SMS",
        "status": "delivered",
        "from": LEAD_PHONE if inbound else OUR_NUMBER,
        "to": OUR_NUMBER if inbound else LEAD_PHONE,
    }
    if not inbound:
        payload |= {"userId": "Us3Ty6Ui9Op2As5Df8Gh", "source": "app"}
    payload.update(changes)
    return payload


async def test_an_inbound_and_an_outbound_sms_alike_in_all_but_direction_are_two_messages(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    inbound, outbound = sms_event("InboundMessage"), sms_event("OutboundMessage")
    answers = [await post(client, workspace, encode(p)) for p in (inbound, outbound)]
    again = [await post(client, workspace, encode(p)) for p in (outbound, inbound)]
    assert [a.json()["deduped"] for a in answers + again] == [False, False, True, True]
    assert [a.json()["message_id"] for a in again] == [2, 1]
    stored = await rows(
        settings.database_url,
        "SELECT m.direction, m.body, l.phone FROM messages m JOIN leads l ON l.id = m.lead_id "
        "ORDER BY m.id",
    )
    assert stored == [
        {"direction": "inbound", "body": "Sounds good, talk then", "phone": LEAD_PHONE},
        {"direction": "outbound", "body": "Sounds good, talk then", "phone": LEAD_PHONE},
    ]
    jobs = await rows(settings.database_url, "SELECT message_id FROM background_jobs")
    assert jobs == [{"message_id": 1}]


def contact_workflow(**changes: Any) -> dict[str, Any]:
    """A workflow webhook that posts the contact and no message ("tag added", "payment
    received"): the standard contact data, the workflow, maybe some Custom Data."""
    payload: dict[str, Any] = {
        "contact_id": "Ct5Rq2Wx8Zn1Lp4Kv7Hs",
        "first_name": "Ana",
        "last_name": "Silva",
        "full_name": "Ana Silva",
        "email": "ana.silva@fabrikam.example.com",
        "phone": LEAD_PHONE,
        "tags": "paid,q2",
        "date_created": "2025-11-02T09:41:07.000Z",
        "contact_type": "customer",
        "location": {"id": LOCATION, "name": "Acme Outbound"},
        "workflow": {"id": "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d", "name": "Payment received"},
        "triggerData": {},
        "customData": {"Amount": "499.00", "Plan": "Pro"},
    }
    payload.update(changes)
    return payload


@pytest.mark.parametrize(
    "payload",
    [contact_workflow(), contact_workflow(customData={}), contact_workflow(customData=None)],
    ids=["custom-data", "empty-custom-data", "no-custom-data"],
)
async def test_a_workflow_that_carries_no_message_is_ignored(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings, payload: dict[str, Any]
) -> None:
    answer = await post(client, workspace, encode(payload))
    assert (answer.status_code, answer.json()) == (
        200,
        {"success": True, "ignored": True, "event": "workflow:no_message"},
    )
    for table in ("messages", "leads", "webhook_quarantine", "alerts", "background_jobs"):
        assert await count(settings.database_url, table) == 0, table


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (contact_workflow(message={"type": 2}), "message.body"),
        (contact_workflow(message={"type": 2, "body": "  "}), "message.body"),
        (contact_workflow(message=None), "message.body"),
        (contact_workflow(customData={"Message": ""}), "message.body"),
    ],
    ids=["no-body", "blank-body", "null-message", "empty-custom-message"],
)
async def test_a_message_whose_body_cannot_be_read_is_quarantined(
    client: AppClient,
    workspace: CreatedWorkspace,
    settings: Settings,
    payload: dict[str, Any],
    error: str,
) -> None:
    answer = await post(client, workspace, encode(payload))
    assert answer.status_code == 202 and answer.json()["quarantined"] is True
    [kept] = await rows(settings.database_url, "SELECT provider, error FROM webhook_quarantine")
    assert kept["provider"] == "ghl" and error in kept["error"]
    assert await count(settings.database_url, "alerts", "kind = 'quarantine'") == 1
    assert await count(settings.database_url, "messages") == 0


async def test_message_shaped_events_are_never_dropped_silently(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    untyped_sms = sms_event("InboundMessage", messageType=None, body="Can we move it to 4?")
    untyped_email = sms_event(
        "InboundMessage",
        messageType="",
        body="Please send the deck",
        subject="Re: Deck",
        **{"from": "Ana Silva <Ana.Silva@fabrikam.example.com>", "to": ["sam@acme.example.com"]},
    )
    untyped_other = sms_event(
        "InboundMessage", messageType=None, body="hola", **{"from": "fb-psid-4839201928374"}
    )
    answers = [
        await post(client, workspace, encode(p))
        for p in (untyped_sms, untyped_email, untyped_other)
    ]
    assert [a.status_code for a in answers] == [200, 200, 202]
    assert [a.json().get("event") for a in answers[:2]] == ["InboundMessage", "InboundMessage"]
    stored = await rows(
        settings.database_url,
        "SELECT m.channel, m.subject, m.body, l.phone, l.email FROM messages m "
        "JOIN leads l ON l.id = m.lead_id ORDER BY m.id",
    )
    assert stored == [
        {
            "channel": "sms",
            "subject": None,
            "body": "Can we move it to 4?",
            "phone": LEAD_PHONE,
            "email": None,
        },
        {
            "channel": "email",
            "subject": "Re: Deck",
            "body": "Please send the deck",
            "phone": None,  # an email lead: the contact id stays with the SMS lead
            "email": "ana.silva@fabrikam.example.com",
        },
    ]
    [kept] = await rows(settings.database_url, "SELECT error FROM webhook_quarantine")
    assert "no messageType" in kept["error"]


@pytest.mark.parametrize(
    ("changes", "event"),
    [
        ({"messageType": "CALL", "body": None, "callDuration": 42}, "InboundMessage:CALL"),
        ({"messageType": "VoiceMail", "body": None}, "InboundMessage:VoiceMail"),
        ({"messageType": "FB", "from": "fb-psid-1"}, "InboundMessage:FB"),
        ({"messageType": "Live Chat"}, "InboundMessage:Live Chat"),
        ({"type": "ContactTagUpdate", "tags": ["hot"]}, "ContactTagUpdate"),
        ({"type": "LCEmailStats", "event": "opened"}, "LCEmailStats"),
    ],
    ids=["call", "voicemail", "facebook", "live-chat", "tag", "email-open"],
)
async def test_only_events_known_not_to_be_messages_are_ignored(
    client: AppClient,
    workspace: CreatedWorkspace,
    settings: Settings,
    changes: dict[str, Any],
    event: str,
) -> None:
    answer = await post(client, workspace, encode(sms_event("InboundMessage", **changes)))
    assert answer.json() == {"success": True, "ignored": True, "event": event}
    for table in ("messages", "leads", "webhook_quarantine"):
        assert await count(settings.database_url, table) == 0, table


def reply(body: str, date: str | None, time: str | None, **changes: Any) -> dict[str, Any]:
    """A "Customer Replied" workflow delivery whose Custom Data holds the message and, when
    given, the event's date and time as the README's ``{{right_now.…}}`` fields render them."""
    custom = {"Message": body, "Phone Number": "+15555550142"}
    custom |= {"Date": date, "Time": time} if date is not None and time is not None else {}
    return workflow(message={"type": 2, "body": body}, customData=custom, **changes)


async def test_identical_replies_days_apart_are_two_messages_only_with_date_and_time(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    dated = [reply("Yes", "2026-3-2", "9:15:07"), reply("Yes", "2026-3-9", "16:02:41")]
    undated = [reply("Yes", None, None), reply("Yes", None, None)]
    answers = [await post(client, workspace, encode(p)) for p in dated + undated]
    assert [a.json()["deduped"] for a in answers] == [False, False, False, True]
    assert await count(settings.database_url, "messages") == 3


async def status_page(client: AppClient) -> str:
    page = await client.http.get("/status", headers={"Authorization": "Bearer admin-test-token"})
    assert page.status_code == 200
    return page.text


def warnings_on(page: str, workspace: CreatedWorkspace) -> int:
    return page.count(f'class="banner warning" data-workspace="{workspace.id}"')


async def marks(settings: Settings) -> dict[str, dt.datetime | None]:
    [row] = await rows(
        settings.database_url,
        "SELECT ghl_undated_workflow_sms_at, ghl_workflow_sms_at, ghl_marketplace_sms_at "
        "FROM workspaces",
    )
    return {k: None if v is None else utc(v) for k, v in row.items()}


async def test_undated_workflow_sms_are_counted_marked_durably_and_shown(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    runtime = client.app.state.runtime
    start = dt.datetime.now(dt.UTC)
    runtime.clock = lambda: start
    await post(client, workspace, encode(reply("Dated", "2026-3-4", "10:22:09")))
    assert warnings_on(await status_page(client), workspace) == 0
    assert (await marks(settings))["ghl_undated_workflow_sms_at"] is None

    bodies = [f"Reply {i}" for i in range(20)]
    answers = await asyncio.gather(
        *(post(client, workspace, encode(reply(b, None, None))) for b in bodies)
    )
    assert [a.json()["deduped"] for a in answers] == [False] * 20
    scraped = (await client.http.get("/metrics")).text
    assert f'hookgate_ghl_undated_workflow_sms_total{{workspace="{workspace.id}"}} 20.0' in scraped
    marked = (await marks(settings))["ghl_undated_workflow_sms_at"]
    assert marked is not None and abs((marked - start).total_seconds()) < 60
    page = await status_page(client)
    assert warnings_on(page, workspace) == 1
    assert "identical replies from one contact are merged" in page
    assert "{{right_now.hour}}:{{right_now.minute}}:{{right_now.second}}" in page

    # While the mark is fresh the hot path writes nothing: a mark made old behind this process's
    # back stays old until an hour has passed, then the next undated delivery refreshes it.
    old = start - dt.timedelta(days=8)
    await set_marks(settings, old)
    await post(client, workspace, encode(reply("Later", None, None)))
    assert (await marks(settings))["ghl_undated_workflow_sms_at"] == old
    assert warnings_on(await status_page(client), workspace) == 0  # faded after a week
    runtime.clock = lambda: start + dt.timedelta(hours=2)
    await post(client, workspace, encode(reply("Much later", None, None)))
    refreshed = (await marks(settings))["ghl_undated_workflow_sms_at"]
    assert refreshed is not None and refreshed > old + dt.timedelta(days=7)
    assert warnings_on(await status_page(client), workspace) == 1


async def set_marks(settings: Settings, when: dt.datetime) -> None:
    """Every notice mark of every workspace set to ``when``, straight through the driver."""
    marks = ("ghl_undated_workflow_sms_at", "ghl_workflow_sms_at", "ghl_marketplace_sms_at")
    if settings.database_url.startswith("sqlite:///"):
        conn = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
        try:  # the port's adapter stores the datetime as it stores its own
            conn.execute(
                f"UPDATE workspaces SET {', '.join(f'{m} = ?' for m in marks)}", [when] * 3
            )
            conn.commit()
        finally:
            conn.close()
        return
    pg = await asyncpg.connect(settings.database_url)
    try:
        await pg.execute(f"UPDATE workspaces SET {', '.join(f'{m} = $1' for m in marks)}", when)
    finally:
        await pg.close()


async def test_a_location_that_sends_both_shapes_is_warned_of_doubled_sms(
    client: AppClient, workspace: CreatedWorkspace, db: Database, settings: Settings
) -> None:
    marketplace_only = await create_workspace(db, "Marketplace only", WorkspaceOptions())
    await post(client, marketplace_only, encode(fixture_json(INBOUND)))
    await post(client, workspace, encode(reply("Yes", "2026-3-4", "10:22:09")))
    page = await status_page(client)
    assert warnings_on(page, workspace) == 0 and warnings_on(page, marketplace_only) == 0
    # The same SMS, now in the marketplace shape too: a second row, and the warning.
    answer = await post(client, workspace, encode(fixture_json(INBOUND)))
    assert answer.json()["deduped"] is False
    page = await status_page(client)
    assert warnings_on(page, workspace) == 1 and warnings_on(page, marketplace_only) == 0
    assert "each SMS is stored twice" in page
