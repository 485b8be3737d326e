"""The lead-identity rule: a lead is found or created by its channel's primary identity; the
other identities a delivery names are attached only where the lead has none and no other lead
holds them.  A held identity stays where it is -- never moved, never merged, never an error --
including when two transactions race for it on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from typing import Any

import pytest

from gateway.events import Lead
from gateway.ingest_store import upsert_leads
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace
from sql import Connection, Database
from tests.conftest import AppClient, count, fixture_json, rows

NOW = dt.datetime(2026, 3, 4, tzinfo=dt.UTC)


async def upsert_lead(conn: Connection, workspace_id: str, lead: Lead, now: dt.datetime) -> int:
    [lead_id] = (await upsert_leads(conn, [(workspace_id, lead, now)])).values()
    return lead_id


async def upsert(db: Database, workspace: CreatedWorkspace, lead: Lead) -> int:
    async with db.transaction() as conn:
        return await upsert_lead(conn, workspace.id, lead, NOW)


async def leads(settings: Settings) -> list[dict[str, Any]]:
    return await rows(
        settings.database_url,
        "SELECT id, email, phone, linkedin_id, ghl_contact_id FROM leads ORDER BY id",
    )


async def test_secondary_identities_are_attached_when_free_and_never_overwritten(
    db: Database, workspace: CreatedWorkspace, settings: Settings
) -> None:
    first = await upsert(db, workspace, Lead(email="a@x.com"))
    again = await upsert(
        db, workspace, Lead(email="a@x.com", phone="+15550001", linkedin_id="ACo1")
    )
    changed = await upsert(db, workspace, Lead(email="a@x.com", phone="+15550002"))
    assert first == again == changed
    assert await leads(settings) == [
        {
            "id": first,
            "email": "a@x.com",
            "phone": "+15550001",  # the first phone stays: identities are never overwritten
            "linkedin_id": "ACo1",
            "ghl_contact_id": None,
        }
    ]


async def test_an_identity_held_by_another_lead_stays_there(
    db: Database, workspace: CreatedWorkspace, settings: Settings
) -> None:
    holder = await upsert(db, workspace, Lead(email="a@x.com", phone="+15550001"))
    other = await upsert(
        db,
        workspace,
        Lead(linkedin_id="ACo2", phone="+15550001", email="b@x.com", key="linkedin_id"),
    )
    assert other != holder
    assert await leads(settings) == [
        {"id": holder, "email": "a@x.com", "phone": "+15550001", "linkedin_id": None,
         "ghl_contact_id": None},
        # The free identity (b@x.com) is attached; the held one (the phone) is not.
        {"id": other, "email": "b@x.com", "phone": None, "linkedin_id": "ACo2",
         "ghl_contact_id": None},
    ]  # fmt: skip


async def test_two_transactions_racing_for_one_identity_both_succeed(
    db: Database, workspace: CreatedWorkspace, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """T1 gives the email to its lead and holds its transaction open; T2 tries the same for
    another lead.  On PostgreSQL T2's guarded UPDATE cannot see T1's uncommitted row, waits on
    the unique index and fails once T1 commits: the savepoint turns that into "T1's lead keeps
    it".  On SQLite T2 waits for the single writer and its guard sees the committed row."""
    attached = asyncio.Event()

    async def first() -> int:
        async with db.transaction() as conn:
            lead_id = await upsert_lead(
                conn,
                workspace.id,
                Lead(linkedin_id="ACo1", email="e@x.com", key="linkedin_id"),
                NOW,
            )
            attached.set()
            await asyncio.sleep(0.3)  # T2 is now blocked behind this transaction
            return lead_id

    async def second() -> int:
        await attached.wait()
        async with db.transaction() as conn:
            lead_id = await upsert_lead(
                conn,
                workspace.id,
                Lead(linkedin_id="ACo2", email="e@x.com", key="linkedin_id"),
                NOW,
            )
            # The transaction is still usable after the savepoint rolled back.
            await upsert_lead(conn, workspace.id, Lead(email="later@x.com"), NOW)
            return lead_id

    with caplog.at_level(logging.INFO, logger="hookgate.ingest"):
        one, two = await asyncio.gather(first(), second())
    # On PostgreSQL the race really happened and was caught under the savepoint.
    raced = "lead identity kept by another lead" in caplog.messages
    assert raced is (db.dialect == "postgres")
    stored = {row["linkedin_id"]: row["email"] for row in await leads(settings)}
    assert stored == {"ACo1": "e@x.com", "ACo2": None, None: "later@x.com"}
    assert one != two


async def test_many_concurrent_deliveries_sharing_a_secondary_identity(
    db: Database, workspace: CreatedWorkspace, settings: Settings
) -> None:
    results = await asyncio.gather(
        *(
            upsert(db, workspace, Lead(linkedin_id=f"ACo{n}", phone="+15550009", key="linkedin_id"))
            for n in range(30)
        )
    )
    assert len(set(results)) == 30
    assert await count(settings.database_url, "leads", "phone = '+15550009'") == 1


async def test_ghl_phone_that_moved_to_another_contact_is_stored_without_error(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    """Through the route: contact C1 had the number; now contact C2 writes from it."""
    url = client.url("ghl", workspace)
    first = fixture_json("gohighlevel/workflow_webhook_customer_replied_sms.json")
    moved = {**first, "contact_id": "C2", "email": None, "message": {"type": 2, "body": "new"}}
    answers = [await client.http.post(url, content=json.dumps(p)) for p in (first, moved)]
    assert [a.status_code for a in answers] == [200, 200]
    stored = await rows(
        settings.database_url,
        "SELECT m.body, l.ghl_contact_id, l.phone FROM messages m "
        "JOIN leads l ON l.id = m.lead_id ORDER BY m.id",
    )
    assert stored == [
        {"body": first["message"]["body"], "ghl_contact_id": first["contact_id"],
         "phone": "+15555550142"},
        {"body": "new", "ghl_contact_id": "C2", "phone": None},
    ]  # fmt: skip


async def test_a_lead_without_its_primary_identity_is_quarantined_not_stored(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    payload = fixture_json("gohighlevel/workflow_webhook_customer_replied_sms.json")
    payload.update(contact_id=None, phone="not a phone")
    payload["customData"].pop("Phone Number")
    answer = await client.http.post(client.url("ghl", workspace), content=json.dumps(payload))
    assert answer.status_code == 202
    assert await count(settings.database_url, "leads") == 0
    assert await count(settings.database_url, "messages") == 0
