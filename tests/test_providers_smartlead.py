"""SmartLead: replies keyed on the reply's Message-ID (never stats_id alone), sends on stats_id,
bounces, lead category updates, a name from to_name only when it is the lead's, and the
secret_key inside the body."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace, WorkspaceOptions, create_workspace
from sql import Database
from tests.conftest import AppClient, count, encode, fixture_json, rows, utc

REPLY = "smartlead/email_reply.json"
SENT = "smartlead/email_sent.json"
SECRET = "3f6c8d21-a619-48c2-93f6-72936ee16f38"  # the fixtures' secret_key
REPLY_ID = "<CAF7kq2n1Xz9Q@mail.northwind.example.com>"


@pytest.fixture
async def secured(db: Database) -> CreatedWorkspace:
    """A workspace with the SmartLead secret its fixtures carry."""
    return await create_workspace(db, "Acme", WorkspaceOptions(smartlead_secret=SECRET))


async def post(client: AppClient, workspace: CreatedWorkspace, payload: dict[str, Any]) -> Any:
    return await client.http.post(client.url("smartlead", workspace), content=encode(payload))


async def test_reply_fixture_is_stored_field_by_field(
    client: AppClient, secured: CreatedWorkspace, settings: Settings
) -> None:
    answer = await post(client, secured, fixture_json(REPLY))
    assert answer.status_code == 200
    assert answer.json() == {
        "success": True,
        "deduped": False,
        "event": "EMAIL_REPLY",
        "message_id": 1,
    }
    [message] = await rows(settings.database_url, "SELECT * FROM messages")
    assert {
        k: message[k]
        for k in ("channel", "direction", "provider", "webhook_dedupe_key", "subject", "body")
    } == {
        "channel": "email",
        "direction": "inbound",
        "provider": "smartlead",
        "webhook_dedupe_key": f"smartlead:{REPLY_ID}",
        "subject": "Re: Quick question about Northwind's hiring plans",
        "body": "Thanks for reaching out. Can you send over pricing?",
    }
    assert utc(message["sent_at"]) == dt.datetime(2026, 3, 4, 15, 22, 41, tzinfo=dt.UTC)
    [lead] = await rows(settings.database_url, "SELECT email, first_name, last_name FROM leads")
    assert lead == {
        "email": "jordan.lee@northwind.example.com",
        "first_name": "Jordan",
        "last_name": "Lee",
    }
    jobs = await rows(settings.database_url, "SELECT type FROM background_jobs")
    assert jobs == [{"type": "EMAIL_INBOUND_POST_PROCESS"}]


async def test_sent_fixture_is_keyed_on_stats_id_and_first_email_sent_is_the_same_send(
    client: AppClient, secured: CreatedWorkspace, settings: Settings
) -> None:
    first = await post(client, secured, fixture_json(SENT))
    again = await post(client, secured, {**fixture_json(SENT), "event_type": "FIRST_EMAIL_SENT"})
    assert again.json()["deduped"] is True
    assert again.json()["message_id"] == first.json()["message_id"]
    [message] = await rows(settings.database_url, "SELECT * FROM messages")
    assert message["webhook_dedupe_key"] == "smartlead:sent:c4d5e6f7-a8b9-4c0d-9e1f-2a3b4c5d6e7f"
    assert (message["direction"], message["subject"]) == (
        "outbound",
        "Quick question about Northwind's hiring plans",
    )
    assert message["body"] == "Hi Jordan, following up on my note from last week..."
    assert await count(settings.database_url, "background_jobs") == 0


async def test_reply_variants_legacy_ids_and_several_replies_to_one_email(
    client: AppClient, secured: CreatedWorkspace, settings: Settings
) -> None:
    legacy = fixture_json(REPLY)  # only the deprecated top-level message_id and reply_body
    del legacy["reply_message"]
    second = {**fixture_json(REPLY), "reply_message": {"message_id": "<two@x>", "text": "🙂 ok"}}
    minimal = {  # no ids at all: stats_id with event_timestamp, as a last resort
        "event_type": "EMAIL_REPLY",
        "secret_key": SECRET,
        "stats_id": "a891fe37-c45d-41e8-87ba-fcd44e9c33a8",
        "event_timestamp": "2026-03-05T10:00:00+00:00",
        "to_email": "Jordan.Lee@northwind.example.com",
        "preview_text": "Also: next week?",
        "campaign_id": "9181",
    }
    answers = [
        await post(client, secured, p) for p in (legacy, fixture_json(REPLY), second, minimal)
    ]
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.json()["deduped"] for a in answers] == [False, True, False, False]
    stored = await rows(
        settings.database_url, "SELECT webhook_dedupe_key, body FROM messages ORDER BY id"
    )
    assert stored == [
        {
            "webhook_dedupe_key": f"smartlead:{REPLY_ID}",
            "body": "<div>Thanks for reaching out. Can you send over pricing?</div>",
        },
        {"webhook_dedupe_key": "smartlead:<two@x>", "body": "🙂 ok"},
        {
            "webhook_dedupe_key": "smartlead:email_reply:a891fe37-c45d-41e8-87ba-fcd44e9c33a8:"
            "2026-03-05T10:00:00+00:00",
            "body": "Also: next week?",
        },
    ]
    assert await count(settings.database_url, "leads") == 1


async def test_to_name_names_the_lead_only_when_to_email_is_the_leads(
    client: AppClient, secured: CreatedWorkspace, settings: Settings
) -> None:
    """On a reply, to_email/to_name can be the workspace's own sender: the lead keeps its name."""
    lead = "nina.costa@woodgrove.example.com"
    sent = {
        "event_type": "EMAIL_SENT",
        "secret_key": SECRET,
        "campaign_id": 9202,
        "stats_id": "5f0e1d2c-3b4a-4958-8776-a5b4c3d2e1f0",
        "from_email": "alia@send.acme-mail.example.com",
        "to_email": lead,
        "to_name": "Nina Costa",
        "subject": "Woodgrove and the Q3 rollout",
        "sent_message": {"message_id": "<s1@send.acme-mail.example.com>", "text": "Hi Nina"},
        "event_timestamp": "2026-03-10T09:00:00+00:00",
    }
    reply_to_sender = {
        "event_type": "EMAIL_REPLY",
        "secret_key": SECRET,
        "campaign_id": 9202,
        "stats_id": "5f0e1d2c-3b4a-4958-8776-a5b4c3d2e1f0",
        "sl_lead_email": lead,
        "from_email": lead,
        "to_email": "alia@send.acme-mail.example.com",
        "to_name": "Alia Romero",
        "subject": "Re: Woodgrove and the Q3 rollout",
        "reply_message": {"message_id": "<r1@mail.woodgrove.example.com>", "text": "Thursday?"},
        "event_timestamp": "2026-03-11T10:30:00+00:00",
    }
    renamed = {
        **reply_to_sender,
        "to_email": lead.upper(),
        "to_name": "Nina Costa-Reyes",
        "reply_message": {"message_id": "<r2@mail.woodgrove.example.com>", "text": "Or Friday"},
    }
    names = []
    for payload in (sent, reply_to_sender, renamed):
        assert (await post(client, secured, payload)).status_code == 200
        [row] = await rows(settings.database_url, "SELECT email, first_name, last_name FROM leads")
        names.append((row["email"], row["first_name"], row["last_name"]))
    assert names == [
        (lead, "Nina", "Costa"),
        (lead, "Nina", "Costa"),  # not renamed "Alia Romero"
        (lead, "Nina", "Costa-Reyes"),
    ]


async def test_bounce_and_lead_category_updates(
    client: AppClient, secured: CreatedWorkspace, settings: Settings
) -> None:
    bounce = {
        "event_type": "EMAIL_BOUNCE",
        "secret_key": SECRET,
        "to_email": "jordan.lee@northwind.example.com",
        "stats_id": "c4d5e6f7",
        "bounce_message": {"message_id": "<bounce-1@mx>", "text": "550 no such user"},
    }
    category = {
        "event_type": "LEAD_CATEGORY_UPDATED",
        "secret_key": SECRET,
        "lead_email": "jordan.lee@northwind.example.com",
        "lead_category": {"old_name": None, "new_name": "Interested"},
    }
    opened = {**fixture_json(SENT), "event_type": "EMAIL_OPEN"}
    answers = [await post(client, secured, p) for p in (bounce, category, opened)]
    assert answers[0].json()["deduped"] is False
    assert answers[1].json() == {"success": True, "ignored": True, "event": "LEAD_CATEGORY_UPDATED"}
    assert answers[2].json() == {"success": True, "ignored": True, "event": "EMAIL_OPEN"}
    [message] = await rows(
        settings.database_url, "SELECT webhook_dedupe_key, direction FROM messages"
    )
    assert message == {"webhook_dedupe_key": "smartlead:<bounce-1@mx>", "direction": "inbound"}
    [lead] = await rows(settings.database_url, "SELECT status, interested FROM leads")
    assert lead["status"] == "Interested" and bool(lead["interested"]) is True


async def test_secret_key_must_match_the_workspace_secret(
    client: AppClient, secured: CreatedWorkspace, workspace: CreatedWorkspace, settings: Settings
) -> None:
    wrong = {**fixture_json(REPLY), "secret_key": "not-the-secret"}
    missing = fixture_json(REPLY)
    del missing["secret_key"]
    for payload in (wrong, missing, {**fixture_json(REPLY), "secret_key": 12345}):
        answer = await post(client, secured, payload)
        assert (answer.status_code, answer.json()) == (
            401,
            {"success": False, "error": "unauthorized"},
        )
    # The right secret with another workspace's token is refused too.
    other = await client.http.post(
        client.url("smartlead", secured, token=workspace.tokens["smartlead"]),
        content=encode(fixture_json(REPLY)),
    )
    assert other.status_code == 401
    assert await count(settings.database_url, "messages") == 0
    assert await count(settings.database_url, "leads") == 0
    # A workspace without a SmartLead secret relies on its URL token alone.
    assert (await post(client, workspace, wrong)).status_code == 200


async def test_unreadable_reply_is_quarantined_not_stored(
    client: AppClient, secured: CreatedWorkspace, settings: Settings
) -> None:
    no_lead = {"event_type": "EMAIL_REPLY", "secret_key": SECRET, "message_id": "<x@y>"}
    answer = await post(client, secured, no_lead)
    assert answer.status_code == 202 and answer.json()["quarantined"] is True
    [kept] = await rows(settings.database_url, "SELECT error FROM webhook_quarantine")
    assert "no lead email" in kept["error"]
    assert await count(settings.database_url, "messages") == 0


async def test_a_hundred_identical_deliveries_store_one_row(
    client: AppClient, secured: CreatedWorkspace, settings: Settings
) -> None:
    answers = await asyncio.gather(
        *(post(client, secured, fixture_json(REPLY)) for _ in range(100))
    )
    assert {a.status_code for a in answers} == {200}
    assert [a.json()["deduped"] for a in answers].count(False) == 1
    assert await count(settings.database_url, "messages") == 1
    assert await count(settings.database_url, "background_jobs") == 1
