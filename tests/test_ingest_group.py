"""Group commit (issue 15): deliveries arriving together are stored by one transaction, with
every guarantee of one delivery at a time — exactly once, news kept, one bad delivery failing
alone, leads upserted once, jobs enqueued with their messages and one wake-up per group.  Real
concurrency on both backends: many deliveries at once through the ASGI app, then the rows."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import re
from typing import Any

import httpx2
import pytest

from gateway.app import create_app
from gateway.events import IntegrationStatus, Lead, LeadUpdate, Message, ReplayedDelivery
from gateway.ingest import ingest, store_message
from gateway.ingest_group import open_groups
from gateway.metrics import Metrics
from gateway.providers import Delivery
from gateway.quarantine import quarantine_delivery
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace
from sql import ConstraintViolation, Database
from tests.conftest import AppClient, app_client, count, encode, fixture_json, make_settings, rows

NOW = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)


def reply(
    reply_id: int, *, event: str = "LEAD_REPLIED", email: str = "a@x.com", **lead: str
) -> bytes:
    payload = fixture_json("emailbison/lead_replied.json")
    payload["event"]["type"] = event
    payload["data"]["reply"]["id"] = reply_id
    payload["data"]["lead"]["email"] = email
    payload["data"]["lead"].update(lead)
    return encode(payload)


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Delivery stats written only by the groups (no flush in between): see the burst test.
    return make_settings(database_url, HOOKGATE_SCHEDULER="false", DELIVERY_STATS_FLUSH_S="3600")


async def post_all(client: AppClient, url: str, bodies: list[bytes]) -> list[httpx2.Response]:
    return list(await asyncio.gather(*(client.http.post(url, content=b) for b in bodies)))


def metric(client: AppClient, name: str) -> float:
    text = client.app.state.runtime.metrics.render().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match is not None, name
    return float(match.group(1))


async def test_a_burst_is_stored_in_groups_exactly_once(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    """200 deliveries at once, 50 distinct replies each sent four times, some copies bringing
    LEAD_INTERESTED: one row and one job per reply, every copy answered with that row's id."""
    url = client.url("emailbison", workspace)
    wakeups = 0

    def job_due() -> None:
        nonlocal wakeups
        wakeups += 1

    client.app.state.runtime.job_due = job_due
    bodies = [
        reply(
            1000 + n,
            event="LEAD_INTERESTED" if copy == 3 and n % 2 else "LEAD_REPLIED",
            email=f"lead{n % 10}@x.com",
            first_name=f"Name{copy}",
        )
        for copy in range(4)
        for n in range(50)
    ]
    answers = await post_all(client, url, bodies)
    assert [a.status_code for a in answers] == [200] * 200
    by_reply: dict[int, list[dict[str, Any]]] = {}
    for n, answer in enumerate(answers):
        by_reply.setdefault(1000 + n % 50, []).append(answer.json())
    for found in by_reply.values():
        assert len({a["message_id"] for a in found}) == 1
        assert [a["deduped"] for a in found].count(False) == 1
    db_url = settings.database_url
    assert await count(db_url, "messages") == 50
    assert await count(db_url, "background_jobs") == 50
    assert await count(db_url, "leads") == 10
    stored = await rows(db_url, "SELECT interested FROM messages ORDER BY email_bison_reply_id")
    # The news a copy carried (LEAD_INTERESTED) is kept, whichever group the copy was in.
    assert [bool(m["interested"]) for m in stored] == [n % 2 == 1 for n in range(50)]
    assert await count(db_url, "leads", "interested") == 5
    groups = metric(client, "hookgate_ingest_group_size_count")
    assert groups < 200  # grouped …
    assert metric(client, "hookgate_ingest_group_size_sum") == 200
    assert 1 <= wakeups <= groups  # … and the runner woken once per group at most

    later = await client.http.post(url, content=reply(1001))
    assert later.json()["deduped"] is True
    # The later group wrote the delivery stats of the burst's answers in its transaction: 200
    # deliveries, and three deduped copies of each message.
    [written] = await rows(db_url, "SELECT sum(deliveries) AS n FROM delivery_stats")
    assert written["n"] == 200
    copies = await rows(db_url, "SELECT copies FROM message_copies")
    assert [c["copies"] for c in copies] == [3] * 50


async def test_groups_are_bounded_by_ingest_batch_max(
    database_url: str, db: Database, workspace: CreatedWorkspace
) -> None:
    settings = make_settings(database_url, HOOKGATE_SCHEDULER="false", INGEST_BATCH_MAX="4")
    async with app_client(settings) as client:
        url = client.url("emailbison", workspace)
        answers = await post_all(client, url, [reply(n) for n in range(40)])
        assert {a.status_code for a in answers} == {200}
        assert metric(client, 'hookgate_ingest_group_size_bucket{le="4.0"}') == metric(
            client, "hookgate_ingest_group_size_count"
        )
    assert await count(database_url, "messages") == 40


async def test_leads_of_concurrent_groups_never_deadlock(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    """Every delivery renames one of five leads (news: an upsert), in opposite orders in
    concurrent groups: each group upserts a lead once and in key order — no deadlock, no "ON
    CONFLICT DO UPDATE cannot affect row a second time"."""
    url = client.url("emailbison", workspace)
    emails = [f"l{n}@x.com" for n in range(5)]
    bodies = [
        reply(2000 + n, email=(emails if n % 2 else emails[::-1])[n % 5], first_name=f"N{n}")
        for n in range(150)
    ]
    answers = await post_all(client, url, bodies)
    assert {a.status_code for a in answers} == {200}
    assert await count(settings.database_url, "leads") == 5
    assert await count(settings.database_url, "messages", "lead_id IS NOT NULL") == 150


def message(
    key: str,
    *,
    channel: str = "email",
    delivery_id: str | None = None,
    interested: bool = False,
    email: str = "a@x.com",
) -> Message:
    return Message(
        event="LEAD_REPLIED",
        provider="emailbison",
        channel=channel,  # type: ignore[arg-type]  # "fax" in one test: a CHECK violation
        direction="inbound",
        key_column="webhook_dedupe_key",
        key_value=key,
        lead=Lead(email=email),
        interested=interested,
        delivery_id=delivery_id,
    )


async def test_one_bad_delivery_fails_alone(
    db: Database, workspace: CreatedWorkspace, settings: Settings
) -> None:
    """A statement error that is not an outage (here a CHECK violation) fails its group; the
    members are then stored one by one and only the faulty one gets the error."""
    writes = [message(f"k{n}", channel="fax" if n == 7 else "email") for n in range(20)]
    results = await asyncio.gather(
        *(store_message(db, workspace.id, m, now=NOW, max_attempts=5) for m in writes),
        return_exceptions=True,
    )
    assert isinstance(results[7], ConstraintViolation)
    assert not any(isinstance(r, BaseException) for n, r in enumerate(results) if n != 7)
    assert await count(settings.database_url, "messages") == 19
    assert await count(settings.database_url, "background_jobs") == 19


async def test_a_replayed_delivery_id_in_one_group_is_refused(
    db: Database, workspace: CreatedWorkspace, settings: Settings
) -> None:
    """Two messages with one GoHighLevel webhookId in one group: one stored, the other a replay
    (409) that stores nothing, not even its lead, and its neighbours are not disturbed."""
    writes = [
        message("k1", delivery_id="wh-1"),
        message("k2", delivery_id="wh-1", email="replay@x.com"),
        message("k3"),
    ]
    results = await asyncio.gather(
        *(store_message(db, workspace.id, m, now=NOW, max_attempts=5) for m in writes),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["Outcome", "ReplayedDelivery", "Outcome"]
    assert isinstance(results[1], ReplayedDelivery)
    assert await count(settings.database_url, "messages") == 2
    assert await count(settings.database_url, "leads", "email = 'replay@x.com'") == 0


async def test_a_lead_update_joins_the_group_of_its_lead_s_message(
    db: Database, workspace: CreatedWorkspace, settings: Settings
) -> None:
    update = LeadUpdate("LEAD_STATUS", Lead(email="a@x.com", status="meeting", first_name="Ada"))
    await asyncio.gather(
        store_message(db, workspace.id, message("k1"), now=NOW, max_attempts=5),
        ingest(db, workspace.id, update, now=NOW, max_attempts=5),
        store_message(db, workspace.id, message("k2", interested=True), now=NOW, max_attempts=5),
    )
    [lead] = await rows(
        settings.database_url, "SELECT id, status, first_name, interested FROM leads"
    )
    assert (lead["status"], lead["first_name"]) == ("meeting", "Ada")
    assert await count(settings.database_url, "messages", "lead_id = $1", lead["id"]) == 2


async def test_integration_reports_join_the_group_in_arrival_order(
    db: Database, workspace: CreatedWorkspace, settings: Settings
) -> None:
    """Unipile AccountStatus reports stored with the messages of their group; of two reports
    for one account in one group, the later stands."""
    down = IntegrationStatus("AccountStatus", "unipile", connected=False, reason="CREDENTIALS")
    up = IntegrationStatus("AccountStatus", "unipile", connected=True)
    outcomes = await asyncio.gather(
        store_message(db, workspace.id, message("k1"), now=NOW, max_attempts=5),
        ingest(db, workspace.id, down, now=NOW, max_attempts=5),
        ingest(db, workspace.id, up, now=NOW, max_attempts=5),
    )
    assert [o.ignored for o in outcomes] == [False, True, True]
    [health] = await rows(
        settings.database_url, "SELECT status, last_error FROM integration_health"
    )
    assert health == {"status": "ok", "last_error": "CREDENTIALS"}


async def test_a_quarantined_delivery_is_kept_in_the_group_and_its_cap_fails_it_alone(
    database_url: str, db: Database, workspace: CreatedWorkspace
) -> None:
    """Unreadable deliveries are quarantined in the transaction of their group, under a
    savepoint: past QUARANTINE_MAX_PER_HOUR one is refused (400) and stores nothing, while the
    messages and the quarantined delivery beside it are stored."""
    settings = make_settings(database_url, HOOKGATE_SCHEDULER="false", QUARANTINE_MAX_PER_HOUR="1")
    app = create_app(settings)

    def unreadable(n: int) -> bytes:
        payload = fixture_json("emailbison/lead_replied.json")
        del payload["data"]["reply"]
        payload["n"] = n
        return encode(payload)

    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as http:
            client = AppClient(http, app)
            url = client.url("emailbison", workspace)
            bodies = [reply(3000 + n) for n in range(10)] + [unreadable(1), unreadable(2)]
            answers = await post_all(client, url, bodies)
    assert [a.status_code for a in answers[:10]] == [200] * 10
    assert sorted(a.status_code for a in answers[10:]) == [202, 400]
    assert await count(database_url, "messages") == 10
    assert await count(database_url, "webhook_quarantine") == 1
    assert await count(database_url, "alerts", "kind = 'quarantine'") == 1


async def test_a_quarantine_over_its_cap_rolls_back_only_its_own_savepoint(
    database_url: str, db: Database, workspace: CreatedWorkspace
) -> None:
    settings = make_settings(database_url, QUARANTINE_MAX_PER_HOUR="1")
    row = await db.fetch_one("get_workspace", id=workspace.id)
    assert row is not None

    def delivery(n: int) -> Delivery:
        body = encode({"shape": "new", "n": n})
        return Delivery("emailbison", row, {}, {}, body, NOW, settings)

    results = await asyncio.gather(
        quarantine_delivery(db, delivery(1), "data.reply is missing"),
        store_message(db, workspace.id, message("k1"), now=NOW, max_attempts=5),
        quarantine_delivery(db, delivery(2), "data.reply is missing"),
        store_message(db, workspace.id, message("k2"), now=NOW, max_attempts=5),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == [
        "Quarantined",
        "Outcome",
        "QuarantineFull",
        "Outcome",
    ]
    assert await count(database_url, "messages") == 2
    assert await count(database_url, "webhook_quarantine") == 1


async def test_a_group_is_bounded_by_its_message_text_too(
    db: Database, workspace: CreatedWorkspace, settings: Settings
) -> None:
    """Three 6 MiB bodies arriving together: the first two make a group, the third (past
    MAX_GROUP_TEXT) the next one, so a group's one JSON parameter stays bounded."""
    metrics = Metrics()
    open_groups(db, settings, metrics, lambda: None)
    body = "x" * (6 * 1024 * 1024)
    big = [dataclasses.replace(message(f"k{n}"), body=body) for n in range(3)]
    await asyncio.gather(
        *(store_message(db, workspace.id, m, now=NOW, max_attempts=5) for m in big)
    )
    sizes = metrics.render().decode()
    assert "hookgate_ingest_group_size_count 2.0" in sizes
    assert "hookgate_ingest_group_size_sum 3.0" in sizes
    assert await count(settings.database_url, "messages", "length(body) = $1", len(body)) == 3


async def test_every_message_gets_its_lead_whether_the_lead_existed_or_the_group_made_it(
    client: AppClient, workspace: CreatedWorkspace, settings: Settings
) -> None:
    """A lead stored before is given to its messages as they are inserted; a lead the group
    creates is given to them afterwards, in the same transaction — keyed by email, and by
    GoHighLevel contact id."""
    url = client.url("emailbison", workspace)
    await client.http.post(url, content=reply(1, email="known@x.com"))
    bodies = [reply(100 + n, email="known@x.com" if n % 2 else f"new{n}@x.com") for n in range(20)]
    answers = await post_all(client, url, bodies)
    assert {a.status_code for a in answers} == {200}
    stored = await rows(
        settings.database_url,
        "SELECT m.email_bison_reply_id AS reply, l.email FROM messages m "
        "LEFT JOIN leads l ON l.id = m.lead_id ORDER BY m.id",
    )
    expected = {"1": "known@x.com"} | {
        str(100 + n): "known@x.com" if n % 2 else f"new{n}@x.com" for n in range(20)
    }
    assert {r["reply"]: r["email"] for r in stored} == expected
    sms = fixture_json("gohighlevel/inbound_message_sms.json")
    ghl = client.url("ghl", workspace)
    for n in range(3):
        sms["messageId"], sms["webhookId"] = f"sms-{n}", f"wh-{n}"
        assert (await client.http.post(ghl, content=encode(sms))).status_code == 200
    [lead] = await rows(
        settings.database_url,
        "SELECT count(DISTINCT lead_id) AS leads, count(*) AS n, count(lead_id) AS with_lead "
        "FROM messages WHERE ghl_id LIKE 'sms-%'",
    )
    assert (lead["leads"], lead["n"], lead["with_lead"]) == (1, 3, 3)
