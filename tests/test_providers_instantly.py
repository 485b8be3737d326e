"""Instantly: replies keyed instantly:<event_type>:<email_id>:<timestamp>, sends on email_id,
lead_* status events, legacy aliases, and the token or X-Hookgate-Secret header."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace, WorkspaceOptions, create_workspace
from sql import Database
from tests.conftest import AppClient, count, encode, fixture_json, rows, utc

REPLY = "instantly/reply_received.json"
SENT = "instantly/email_sent.json"
REPLY_EMAIL_ID = "01957a3c-9e2f-7b1d-8c4a-2f6e9d0b1a37"


async def post(client: AppClient, workspace: CreatedWorkspace, payload: dict[str, Any]) -> Any:
    return await client.http.post(client.url("instantly", workspace), content=encode(payload))


async def test_reply_fixture_is_stored_field_by_field(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    payload = fixture_json(REPLY)
    answer = await post(client, workspace, payload)
    assert answer.status_code == 200
    assert answer.json() == {
        "success": True,
        "deduped": False,
        "event": "reply_received",
        "message_id": 1,
    }
    [message] = await rows(settings.database_url, "SELECT * FROM messages")
    assert {k: message[k] for k in ("channel", "direction", "provider", "subject", "body")} == {
        "channel": "email",
        "direction": "inbound",
        "provider": "instantly",
        "subject": "Re: Quick question about Northwind's hiring plans",
        "body": payload["reply_text"],
    }
    assert message["webhook_dedupe_key"] == (
        f"instantly:reply_received:{REPLY_EMAIL_ID}:2026-03-04T15:22:43.118Z"
    )
    assert utc(message["sent_at"]) == dt.datetime(2026, 3, 4, 15, 22, 43, 118000, dt.UTC)
    [lead] = await rows(settings.database_url, "SELECT * FROM leads")
    assert {k: lead[k] for k in ("email", "first_name", "last_name", "company", "title")} == {
        "email": "jordan.lee@northwind.example.com",
        "first_name": "Jordan",
        "last_name": "Lee",
        "company": "Northwind Traders",
        "title": "VP Talent",
    }
    assert await count(settings.database_url, "background_jobs") == 1


async def test_sent_fixture_is_outbound_keyed_on_email_id(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    await post(client, workspace, fixture_json(SENT))
    retried = {**fixture_json(SENT), "timestamp": "2026-03-03T14:14:09.000Z"}
    assert (await post(client, workspace, retried)).json()["deduped"] is True
    [message] = await rows(settings.database_url, "SELECT * FROM messages")
    assert message["webhook_dedupe_key"] == (
        "instantly:email_sent:01957a1e-44c0-7d2a-9b3e-6a8c0f2d4e51"
    )
    assert (message["direction"], message["subject"]) == (
        "outbound",
        "Quick question about Northwind's hiring plans",
    )
    assert message["body"].startswith("Hi Jordan,")
    assert await count(settings.database_url, "background_jobs") == 0


async def test_each_reply_occurrence_is_its_own_row_and_auto_replies_are_distinct(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    later = {**fixture_json(REPLY), "timestamp": "2026-03-05T09:00:00.000Z", "reply_text": "And?"}
    auto = {**fixture_json(REPLY), "event_type": "auto_reply_received"}
    answers = [await post(client, workspace, p) for p in (fixture_json(REPLY), later, auto, later)]
    assert [a.json()["deduped"] for a in answers] == [False, False, False, True]
    assert await count(settings.database_url, "messages") == 3


async def test_legacy_aliases_missing_fields_and_unicode(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    legacy = {  # ZRG's older names: type, contact_email, contact_name, an epoch timestamp
        "type": "reply_received",
        "contact_email": "Alex.Morgan@contoso.example.com",
        "contact_name": "Alex Morgan",
        "timestamp": 1772637763,
        "email_id": "e-1",
        "reply_text": "Jä, gärne 😀 — 行",
    }
    no_ids = {  # neither email_id nor timestamp: a content hash, the same for a re-delivery
        "event_type": "reply_received",
        "lead_email": "jordan.lee@northwind.example.com",
        "reply_subject": "Re: hi",
        "reply_text": "Sure   thing",
    }
    answers = [await post(client, workspace, p) for p in (legacy, no_ids)]
    respaced = await post(client, workspace, {**no_ids, "reply_text": " Sure thing "})
    assert [a.status_code for a in answers] == [200, 200]
    assert respaced.json()["deduped"] is True
    stored = await rows(
        settings.database_url,
        "SELECT m.webhook_dedupe_key, m.body, l.email, l.first_name FROM messages m "
        "JOIN leads l ON l.id = m.lead_id ORDER BY m.id",
    )
    assert stored[0] == {
        "webhook_dedupe_key": "instantly:reply_received:e-1:1772637763",
        "body": "Jä, gärne 😀 — 行",
        "email": "alex.morgan@contoso.example.com",
        "first_name": "Alex",
    }
    assert stored[1]["webhook_dedupe_key"].startswith("instantly:reply:")
    assert len(stored) == 2


async def test_lead_status_events_update_the_lead_and_store_no_message(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    status = {
        "timestamp": "2026-03-04T16:00:00.000Z",
        "event_type": "lead_interested",
        "workspace": "3f1c9e2a",
        "campaign_id": "a2b3c4d5",
        "lead_email": "jordan.lee@northwind.example.com",
    }
    opened = {**fixture_json(SENT), "event_type": "email_opened"}
    answers = [await post(client, workspace, p) for p in (status, opened)]
    assert answers[0].json() == {"success": True, "ignored": True, "event": "lead_interested"}
    assert answers[1].json() == {"success": True, "ignored": True, "event": "email_opened"}
    [lead] = await rows(settings.database_url, "SELECT status, interested FROM leads")
    assert lead["status"] == "interested" and bool(lead["interested"]) is True
    await post(client, workspace, {**status, "event_type": "lead_meeting_booked"})
    [lead] = await rows(settings.database_url, "SELECT status, interested FROM leads")
    assert lead["status"] == "meeting_booked" and bool(lead["interested"]) is True
    assert await count(settings.database_url, "messages") == 0


async def test_token_bearer_or_secret_header_authenticates(
    client: AppClient, db: Database, settings: Settings
) -> None:
    workspace = await create_workspace(db, "H", WorkspaceOptions(instantly_secret="hdr-secret"))
    path = f"/webhooks/instantly/{workspace.id}"
    body = encode(fixture_json(REPLY))
    refused = [
        await client.http.post(path, content=body),
        await client.http.post(path, content=body, headers={"X-Hookgate-Secret": "nope"}),
        await client.http.post(path, content=body, headers={"Authorization": "Bearer nope"}),
    ]
    assert [a.status_code for a in refused] == [401, 401, 401]
    assert await count(settings.database_url, "leads") == 0
    accepted = [
        await client.http.post(path, content=body, headers={"X-Hookgate-Secret": "hdr-secret"}),
        await client.http.post(
            path, content=body, headers={"Authorization": f"Bearer {workspace.tokens['instantly']}"}
        ),
        await post(client, workspace, fixture_json(REPLY)),
    ]
    assert [a.status_code for a in accepted] == [200, 200, 200]
    assert await count(settings.database_url, "messages") == 1


async def test_a_hundred_identical_deliveries_store_one_row(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    answers = await asyncio.gather(
        *(post(client, workspace, fixture_json(REPLY)) for _ in range(100))
    )
    assert {a.status_code for a in answers} == {200}
    assert [a.json()["deduped"] for a in answers].count(False) == 1
    assert await count(settings.database_url, "messages") == 1
