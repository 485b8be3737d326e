"""Unipile: message_received in both directions (keyed on message_id, the owner known from the
payload or from the workspace), account status into integration_health, the Unipile-Auth
header, other accounts ignored, exactly 200 (quarantined deliveries too)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

from gateway.events import Lead, Message
from gateway.ingest import store_message
from gateway.integrations import record_integration_status
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace, WorkspaceOptions, create_workspace
from scheduler.crons import CronService
from sql import Database
from tests.conftest import AppClient, count, encode, fixture_json, rows, utc
from tests.crons_support import cron_runtime, cron_settings
from tests.fakes import UNIPILE_OWNER_ID, FakeServer
from tests.test_cli import hookgate

INBOUND = "unipile/message_received_inbound.json"
STATUS = "unipile/account_status_credentials.json"
OWN_ID = "ACoAAB1xYzSamCarterExampleId0001"
LEAD_ID = "ACoAAAcDMMQBJordanLeeExampleId0002"


def outbound(message_id: str = "sent-1") -> dict[str, Any]:
    """The account's own user writing to Jordan (from another device, or through the API)."""
    payload = fixture_json(INBOUND)
    payload["message_id"] = message_id
    payload["message"] = "Great, talk Tuesday."
    payload["sender"] = {
        "attendee_id": "self",
        "attendee_name": "Sam Carter",
        "attendee_provider_id": OWN_ID,
    }
    return payload


async def post(client: AppClient, workspace: CreatedWorkspace, payload: dict[str, Any]) -> Any:
    return await client.http.post(client.url("unipile", workspace), content=encode(payload))


async def test_inbound_fixture_is_stored_field_by_field(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    answer = await post(client, workspace, fixture_json(INBOUND))
    assert answer.status_code == 200
    assert answer.json() == {
        "success": True,
        "deduped": False,
        "event": "message_received",
        "message_id": 1,
    }
    [message] = await rows(settings.database_url, "SELECT * FROM messages")
    assert {
        k: message[k]
        for k in ("channel", "direction", "provider", "unipile_message_id", "body", "subject")
    } == {
        "channel": "linkedin",
        "direction": "inbound",
        "provider": "unipile",
        "unipile_message_id": "ykmhfXlRW0W_cqReJYrfBw",
        "body": "Thanks for connecting, Sam - happy to chat next week.",
        "subject": None,
    }
    assert utc(message["sent_at"]) == dt.datetime(2026, 3, 4, 15, 22, 41, 965000, dt.UTC)
    [lead] = await rows(settings.database_url, "SELECT * FROM leads")
    assert (lead["linkedin_id"], lead["first_name"], lead["last_name"], lead["email"]) == (
        LEAD_ID,
        "Jordan",
        "Lee",
        None,
    )
    jobs = await rows(settings.database_url, "SELECT type FROM background_jobs")
    assert jobs == [{"type": "LINKEDIN_INBOUND_POST_PROCESS"}]


async def test_own_messages_are_outbound_to_the_other_attendee(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    by_user_id = outbound("sent-1")
    by_flag = {**fixture_json(INBOUND), "message_id": "sent-2", "is_sender": True}
    by_flag["sender"] = {"attendee_provider_id": "someone-unknown"}
    del by_flag["account_info"]
    for payload in (by_user_id, by_flag):
        assert (await post(client, workspace, payload)).status_code == 200
    stored = await rows(
        settings.database_url,
        "SELECT m.direction, l.linkedin_id FROM messages m JOIN leads l ON l.id = m.lead_id",
    )
    assert stored == [{"direction": "outbound", "linkedin_id": LEAD_ID}] * 2
    assert await count(settings.database_url, "background_jobs") == 0


async def test_echo_of_a_message_hookgate_sent_links_to_its_row(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings, db: Database
) -> None:
    sent = Message(
        event="DRAFT_SEND",
        provider="unipile",
        channel="linkedin",
        direction="outbound",
        key_column="unipile_message_id",
        key_value="sent-by-hookgate",
        lead=Lead(linkedin_id=LEAD_ID, key="linkedin_id"),
        body="Great, talk Tuesday.",
    )
    stored = await store_message(
        db, workspace.id, sent, now=dt.datetime.now(dt.UTC), max_attempts=5
    )
    answer = await post(client, workspace, outbound("sent-by-hookgate"))
    assert answer.json()["deduped"] is True
    assert answer.json()["message_id"] == stored.message_id
    assert await count(settings.database_url, "messages") == 1
    assert await count(settings.database_url, "leads") == 1


async def test_variants_missing_optional_fields_unicode_and_other_events(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    minimal = {
        "event": "message_received",
        "message_id": 12345,  # a number where a string is usual
        "message": "Ça marche 🚀 — 好的",
        "sender": {"attendee_provider_id": "ACoNumberTwo"},
    }
    whatsapp = {**fixture_json(INBOUND), "account_type": "WHATSAPP", "message_id": "w"}
    read = {**fixture_json(INBOUND), "event": "message_read"}
    answers = [await post(client, workspace, p) for p in (minimal, whatsapp, read)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[1].json() == {
        "success": True,
        "ignored": True,
        "event": "message_received:WHATSAPP",
    }
    assert answers[2].json()["ignored"] is True
    [message] = await rows(settings.database_url, "SELECT unipile_message_id, body FROM messages")
    assert message == {"unipile_message_id": "12345", "body": "Ça marche 🚀 — 好的"}
    no_sender = {**minimal, "sender": None, "message_id": "x"}
    answer = await post(client, workspace, no_sender)
    # Authenticated but unreadable: quarantined for replay, never a message.
    assert answer.json()["quarantined"] is True
    [kept] = await rows(settings.database_url, "SELECT error FROM webhook_quarantine")
    assert "attendee_provider_id" in kept["error"]
    assert await count(settings.database_url, "messages") == 1


async def test_a_quarantined_delivery_is_answered_exactly_200(
    client: AppClient, db: Database, settings: Settings
) -> None:
    """Unipile re-sends anything but a 200 five times: a kept delivery is answered 200, by
    header or by token, and its re-sends find the row already kept."""
    workspace = await create_workspace(db, "H", WorkspaceOptions(unipile_secret="hdr-secret"))
    unreadable = encode(
        {"event": "message_received", "message_id": "m-9", "message": "hi", "sender": {}}
    )
    by_header = await client.http.post(
        f"/webhooks/unipile/{workspace.id}",
        content=unreadable,
        headers={"Unipile-Auth": "hdr-secret"},
    )
    by_token = await client.http.post(client.url("unipile", workspace), content=unreadable)
    assert (by_header.status_code, by_token.status_code) == (200, 200)
    assert by_header.json() == by_token.json()
    assert by_header.json()["quarantined"] is True and by_header.json()["success"] is True
    [kept] = await rows(settings.database_url, "SELECT id, provider FROM webhook_quarantine")
    assert by_header.json()["delivery_id"] == kept["id"] and kept["provider"] == "unipile"
    assert await count(settings.database_url, "messages") == 0
    # The other providers keep 202 for the same case.
    smartlead = await client.http.post(
        client.url("smartlead", workspace), content=encode({"event_type": "EMAIL_REPLY"})
    )
    assert smartlead.status_code == 202 and smartlead.json()["quarantined"] is True


def v1_message(message_id: str, sender_id: str, text: str) -> dict[str, Any]:
    """A v1 ``message_received`` with neither ``account_info`` nor ``is_sender``: nothing in it
    says whether the account's owner wrote it."""
    owner = {
        "attendee_id": "att-own",
        "attendee_name": "Sam Carter",
        "attendee_provider_id": OWN_ID,
    }
    lead = {
        "attendee_id": "att-lead",
        "attendee_name": "Jordan Lee",
        "attendee_provider_id": LEAD_ID,
    }
    return {
        "account_id": "dfXlh46vQYCsMbVarumWlg",
        "account_type": "LINKEDIN",
        "event": "message_received",
        "chat_id": "chat-v1",
        "timestamp": "2026-03-05T08:00:00.000Z",
        "webhook_name": "gateway-messaging",
        "message_id": message_id,
        "message": text,
        "sender": owner if sender_id == OWN_ID else lead,
        "attendees": [lead],
    }


async def stored_directions(settings: Settings) -> list[dict[str, Any]]:
    return await rows(
        settings.database_url,
        "SELECT m.unipile_message_id AS id, m.direction, l.linkedin_id FROM messages m "
        "JOIN leads l ON l.id = m.lead_id ORDER BY m.id",
    )


async def test_without_sender_details_the_workspaces_own_id_says_who_wrote(
    client: AppClient, db: Database, settings: Settings
) -> None:
    workspace = await create_workspace(db, "Own", WorkspaceOptions(unipile_own_id=OWN_ID))
    for payload in (
        v1_message("v1-own", OWN_ID, "Hi Jordan, are you free Tuesday?"),
        v1_message("v1-lead", LEAD_ID, "Tuesday works."),
    ):
        assert (await post(client, workspace, payload)).status_code == 200
    assert await stored_directions(settings) == [
        {"id": "v1-own", "direction": "outbound", "linkedin_id": LEAD_ID},
        {"id": "v1-lead", "direction": "inbound", "linkedin_id": LEAD_ID},
    ]
    jobs = await rows(settings.database_url, "SELECT message_id FROM background_jobs")
    assert jobs == [{"message_id": 2}]  # only the lead's message is post-processed
    assert await count(settings.database_url, "leads") == 1  # the owner is never a lead


async def test_the_health_check_learns_the_owners_id_for_the_webhook(
    client: AppClient, db: Database, settings: Settings, fake_unipile: FakeServer
) -> None:
    workspace = await create_workspace(
        db, "Learnt", WorkspaceOptions(unipile_account_id="dfXlh46vQYCsMbVarumWlg")
    )
    async with cron_runtime(cron_settings(settings.database_url, unipile=fake_unipile)) as runtime:
        run = await CronService(runtime).run_now("unipile_health")
    assert run.outcome == "ok"
    [row] = await rows(settings.database_url, "SELECT unipile_own_id FROM workspaces")
    assert row["unipile_own_id"] == UNIPILE_OWNER_ID == OWN_ID
    await post(client, workspace, v1_message("v1-own", OWN_ID, "Following up on my note."))
    assert await stored_directions(settings) == [
        {"id": "v1-own", "direction": "outbound", "linkedin_id": LEAD_ID}
    ]
    assert await count(settings.database_url, "background_jobs") == 0


async def test_workspace_create_takes_the_owners_id(client: AppClient, settings: Settings) -> None:
    done = hookgate(
        settings, "workspace", "create", "--name", "CLI", "--unipile-own-id", OWN_ID, "--json"
    )
    assert done.returncode == 0, done.stderr
    url = json.loads(done.stdout)["webhooks"]["unipile"]
    path = url.removeprefix("https://hooks.example.test")
    own = await client.http.post(path, content=encode(v1_message("v1-own", OWN_ID, "Hello")))
    assert own.status_code == 200
    assert await stored_directions(settings) == [
        {"id": "v1-own", "direction": "outbound", "linkedin_id": LEAD_ID}
    ]


async def test_account_status_writes_integration_health_keeping_since(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    runtime = client.app.state.runtime
    t0 = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)
    for minutes, payload in [
        (0, fixture_json(STATUS)),
        (15, fixture_json(STATUS)),
        (30, {"AccountStatus": {"account_id": "dfXlh46vQYCsMbVarumWlg", "message": "OK"}}),
    ]:
        runtime.clock = lambda m=minutes: t0 + dt.timedelta(minutes=m)
        answer = await post(client, workspace, payload)
        assert answer.status_code == 200
        assert answer.json() == {"success": True, "ignored": True, "event": "AccountStatus"}
        [health] = await rows(settings.database_url, "SELECT * FROM integration_health")
        if minutes == 15:
            assert health["status"] == "disconnected" and health["reason"] == "CREDENTIALS"
            assert utc(health["since"]) == t0  # kept while the status does not change
            assert utc(health["checked_at"]) == t0 + dt.timedelta(minutes=15)
            assert health["last_error"] == "CREDENTIALS"
    assert (health["status"], health["reason"], health["last_error"]) == ("ok", "OK", "CREDENTIALS")
    assert utc(health["since"]) == t0 + dt.timedelta(minutes=30)
    assert health["integration"] == "unipile" and health["workspace_id"] == workspace.id
    assert await count(settings.database_url, "messages") == 0


async def test_record_integration_status_reports_a_change_by_since(
    db: Database, workspace: CreatedWorkspace
) -> None:
    t0 = dt.datetime(2026, 3, 4, tzinfo=dt.UTC)
    later = t0 + dt.timedelta(hours=1)
    first = await record_integration_status(db, workspace.id, "unipile", False, "ERROR", t0)
    same = await record_integration_status(db, workspace.id, "unipile", False, "STOPPED", later)
    assert first["since"] == first["checked_at"] == t0
    assert (same["since"], same["checked_at"], same["reason"]) == (t0, later, "STOPPED")


async def test_other_accounts_are_ignored_and_unknown_statuses_change_nothing(
    client: AppClient, db: Database, settings: Settings
) -> None:
    workspace = await create_workspace(db, "Own", WorkspaceOptions(unipile_account_id="mine"))
    connecting = {"AccountStatus": {"account_id": "mine", "message": "CONNECTING"}}
    answers = [
        await post(client, workspace, p)
        for p in (fixture_json(INBOUND), fixture_json(STATUS), connecting)
    ]
    assert [a.json()["event"] for a in answers] == [
        "message_received:other_account",
        "AccountStatus:other_account",
        "AccountStatus:CONNECTING",
    ]
    assert await count(settings.database_url, "messages") == 0
    assert await count(settings.database_url, "integration_health") == 0


async def test_the_unipile_auth_header_or_the_token_authenticates(
    client: AppClient, db: Database, settings: Settings
) -> None:
    workspace = await create_workspace(db, "H", WorkspaceOptions(unipile_secret="s3cret-header"))
    path = f"/webhooks/unipile/{workspace.id}"
    body = encode(fixture_json(INBOUND))
    refused = [
        await client.http.post(path, content=body),
        await client.http.post(path, content=body, headers={"Unipile-Auth": "wrong"}),
        await client.http.post(path, content=body, headers={"Unipile-Auth": ""}),
    ]
    assert [a.status_code for a in refused] == [401, 401, 401]
    assert await count(settings.database_url, "leads") == 0
    by_header = await client.http.post(
        path, content=body, headers={"Unipile-Auth": "s3cret-header"}
    )
    by_token = await post(client, workspace, fixture_json(INBOUND))
    assert (by_header.status_code, by_token.status_code) == (200, 200)
    assert by_token.json()["deduped"] is True


async def test_a_hundred_identical_deliveries_store_one_row(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    answers = await asyncio.gather(
        *(post(client, workspace, fixture_json(INBOUND)) for _ in range(100))
    )
    assert {a.status_code for a in answers} == {200}
    assert [a.json()["deduped"] for a in answers].count(False) == 1
    assert await count(settings.database_url, "messages") == 1
    assert await count(settings.database_url, "leads") == 1
