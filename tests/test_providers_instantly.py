"""Instantly: replies keyed instantly:reply:<email_id>:<timestamp> (one key for a reply and an
auto-reply of one email), sends on email_id, a fallback key with timestamp and step, lead fields
in any case, lead_* status events, legacy aliases, and the token or X-Hookgate-Secret header."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

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
        f"instantly:reply:{REPLY_EMAIL_ID}:2026-03-04T15:22:43.118Z"
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


async def test_each_reply_occurrence_is_its_own_row(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    later = {**fixture_json(REPLY), "timestamp": "2026-03-05T09:00:00.000Z", "reply_text": "And?"}
    answers = [await post(client, workspace, p) for p in (fixture_json(REPLY), later, later)]
    assert [a.json()["deduped"] for a in answers] == [False, False, True]
    assert await count(settings.database_url, "messages") == 2


async def test_one_email_reported_as_reply_and_auto_reply_is_one_message(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    """Both events classify one inbound email: with its ``email_id`` and ``timestamp`` (or, with
    no ``email_id``, its content, ``timestamp`` and ``step``) it is stored once, under the first
    event; an auto-reply at another time is another email."""
    out_of_office = {
        "timestamp": "2026-03-06T07:45:12.530Z",
        "event_type": "auto_reply_received",
        "workspace": "8d2e4f6a-1b3c-4d5e-9f0a-2b4c6d8e0f1a",
        "campaign_id": "c7d8e9f0-a1b2-4c3d-8e4f-5a6b7c8d9e0f",
        "campaign_name": "Spring Ops Leaders",
        "lead_email": "priya.nair@tailspin.example.com",
        "email_account": "lee@mail.acme-outreach.example.com",
        "step": 1,
        "variant": 2,
        "email_id": "0195b2c4-7d1e-7f3a-9b2c-4e6f8a0c2d41",
        "reply_subject": "Automatic reply: Ops tooling at Tailspin",
        "reply_text": "I am out of the office until 10 March.",
    }
    as_reply = {**out_of_office, "event_type": "reply_received"}
    no_id = {k: v for k, v in out_of_office.items() if k != "email_id"}
    no_id_reply = {**no_id, "event_type": "reply_received"}
    next_week = {**out_of_office, "timestamp": "2026-03-13T07:45:12.530Z"}
    payloads = (out_of_office, as_reply, no_id, no_id_reply, next_week)
    answers = [await post(client, workspace, p) for p in payloads]
    assert [a.json()["deduped"] for a in answers] == [False, True, False, True, False]
    assert answers[1].json()["message_id"] == answers[0].json()["message_id"]
    assert answers[3].json()["message_id"] == answers[2].json()["message_id"]
    stored = await rows(settings.database_url, "SELECT event FROM messages ORDER BY id")
    assert [m["event"] for m in stored] == ["auto_reply_received"] * 3
    assert await count(settings.database_url, "background_jobs") == 3


async def test_without_an_email_id_a_later_step_with_the_same_subject_is_another_message(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    """No ``email_id`` (the docs mark it optional): the follow-up step, days later, has the same
    subject and no body, and is still its own message."""
    step_one = {
        "timestamp": "2026-03-02T14:00:03.118Z",
        "event_type": "email_sent",
        "workspace": "8d2e4f6a-1b3c-4d5e-9f0a-2b4c6d8e0f1a",
        "campaign_id": "c7d8e9f0-a1b2-4c3d-8e4f-5a6b7c8d9e0f",
        "lead_email": "priya.nair@tailspin.example.com",
        "step": 1,
        "email_subject": "Ops tooling at Tailspin",
    }
    step_two = {**step_one, "timestamp": "2026-03-05T14:00:07.402Z", "step": 2}
    retried = {**step_two}
    answers = [await post(client, workspace, p) for p in (step_one, step_two, retried)]
    assert [a.json()["deduped"] for a in answers] == [False, False, True]
    stored = await rows(settings.database_url, "SELECT subject, body, direction FROM messages")
    assert (
        stored
        == [{"subject": "Ops tooling at Tailspin", "body": None, "direction": "outbound"}] * 2
    )


@pytest.mark.parametrize(
    "spelling",
    [
        {
            "First_name": "Priya",
            "Last_name": "Nair",
            "Company_name": "Tailspin",
            "Job_title": "COO",
        },
        {
            "first_name": "Priya",
            "last_name": "Nair",
            "company_name": "Tailspin",
            "job_title": "COO",
        },
        {"FirstName": "Priya", "LastName": "Nair", "Company Name": "Tailspin", "JobTitle": "COO"},
        {"firstName": "Priya", "lastName": "Nair", "companyName": "Tailspin", "jobTitle": "COO"},
    ],
    ids=["First_name", "first_name", "FirstName", "firstName"],
)
async def test_merged_lead_fields_are_read_whatever_their_case(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings, spelling: dict[str, str]
) -> None:
    payload = {**fixture_json(REPLY), "lead_email": "priya.nair@tailspin.example.com"}
    for key in ("firstName", "lastName", "companyName", "jobTitle"):
        del payload[key]
    assert (await post(client, workspace, payload | spelling)).status_code == 200
    [lead] = await rows(
        settings.database_url, "SELECT first_name, last_name, company, title FROM leads"
    )
    assert lead == {
        "first_name": "Priya",
        "last_name": "Nair",
        "company": "Tailspin",
        "title": "COO",
    }


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
        "webhook_dedupe_key": "instantly:reply:e-1:1772637763",
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
