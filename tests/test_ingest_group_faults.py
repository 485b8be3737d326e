"""Group commit under faults, both backends: an answer only after the commit, a lost database
failing the whole group (503 + Retry-After, 429 on ghl) with nothing stored that was not
acknowledged, and cancellations — a waiting client, the delivery that started the group, the
group's own task — that never half-answer a group."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import httpx2
import pytest

from gateway.app import create_app
from gateway.events import Lead, Message, Outcome, ReplayedDelivery
from gateway.ingest import store_message
from gateway.ingest_group import groups_for
from gateway.ingest_store import MessageWrite, store_group
from gateway.workspaces import CreatedWorkspace
from sql import Database, DatabaseUnavailable
from tests.cancel_support import CancelAtSuspension
from tests.conftest import AppClient, app_client, count, encode, fixture_json, make_settings, rows

NOW = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)
T = TypeVar("T")


@asynccontextmanager
async def writes_held(database_url: str) -> AsyncIterator[asyncpg.Connection | None]:
    """Another session holds what the group write needs (SQLite's write lock; PostgreSQL's
    messages table) until the block ends; yields the PostgreSQL session."""
    if database_url.startswith("sqlite:///"):
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield None
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    pg = await asyncpg.connect(database_url)
    tx = pg.transaction()
    await tx.start()
    await pg.execute("LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE")
    try:
        yield pg
    finally:
        await tx.rollback()
        await pg.close()


async def lose_the_database(pg: asyncpg.Connection | None, posts: list[asyncio.Task[T]]) -> None:
    """Until every post is answered: on PostgreSQL terminate the sessions waiting for the held
    lock (the group's); on SQLite the held write lock outlasts DATABASE_TIMEOUT_S by itself."""
    while not all(p.done() for p in posts):
        if pg is not None:
            await pg.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock' "
                "AND pid <> pg_backend_pid()"
            )
        await asyncio.sleep(0.05)


def reply(reply_id: int) -> bytes:
    payload = fixture_json("emailbison/lead_replied.json")
    payload["data"]["reply"]["id"] = reply_id
    return encode(payload)


def ghl_sms(message_id: str) -> bytes:
    payload = fixture_json("gohighlevel/inbound_message_sms.json")
    payload["messageId"] = message_id
    return encode(payload)


async def test_an_answer_comes_only_after_the_commit(
    database_url: str, db: Database, workspace: CreatedWorkspace
) -> None:
    settings = make_settings(database_url, HOOKGATE_SCHEDULER="false")
    async with app_client(settings) as client:
        url = client.url("emailbison", workspace)
        async with writes_held(database_url):
            posts = [
                asyncio.create_task(client.http.post(url, content=reply(n))) for n in range(30)
            ]
            await asyncio.sleep(0.5)
            assert not any(p.done() for p in posts)  # stored by a transaction not yet committed
            assert await count(database_url, "messages") == 0
        answers = await asyncio.gather(*posts)
    assert {a.status_code for a in answers} == {200}
    assert await count(database_url, "messages") == 30


async def test_a_lost_database_fails_the_whole_group_and_stores_nothing(
    database_url: str, db: Database, workspace: CreatedWorkspace
) -> None:
    """PostgreSQL: the group's sessions are terminated mid-transaction; SQLite: the write lock
    is held past DATABASE_TIMEOUT_S.  Every member answers 503 + Retry-After (429 on ghl), and
    no row exists for an unacknowledged delivery."""
    settings = make_settings(database_url, HOOKGATE_SCHEDULER="false", DATABASE_TIMEOUT_S="0.5")
    async with app_client(settings) as client:
        eb, ghl = client.url("emailbison", workspace), client.url("ghl", workspace)
        await client.http.post(eb, content=reply(1))  # the workspace is cached from now on
        async with writes_held(database_url) as pg:
            posts = [
                asyncio.create_task(client.http.post(eb, content=reply(100 + n))) for n in range(20)
            ]
            posts.append(asyncio.create_task(client.http.post(ghl, content=ghl_sms("m-1"))))
            await lose_the_database(pg, posts)
        answers = [p.result() for p in posts]
        assert [a.status_code for a in answers] == [503] * 20 + [429]
        assert all(a.headers["retry-after"] for a in answers)
        assert all(a.json()["retryable"] for a in answers)
        assert await count(database_url, "messages") == 1
        assert await count(database_url, "background_jobs") == 1
        # The database is back: the same deliveries are stored now.
        again = await asyncio.gather(
            *(client.http.post(eb, content=reply(100 + n)) for n in range(20))
        )
        assert {a.status_code for a in again} == {200}
    assert await count(database_url, "messages") == 21
    assert await count(database_url, "background_jobs") == 21
    # The delivery stats pending when groups failed were kept for a later write: every answer
    # (1 + 21 refused + 20) is counted once.
    [stats] = await rows(database_url, "SELECT sum(deliveries) AS n FROM delivery_stats")
    assert stats["n"] == 42


def message(key: str, *, interested: bool = False, **fields: Any) -> Message:
    # An inbound message's interest is its lead's too, as the parsers give it.
    return Message(
        event="LEAD_REPLIED",
        provider="emailbison",
        channel="email",
        direction="inbound",
        key_column="webhook_dedupe_key",
        key_value=key,
        lead=Lead(email="a@x.com", interested=interested),
        interested=interested,
        **fields,
    )


async def test_copies_of_a_message_in_flight_fold_into_its_write(
    database_url: str, db: Database, workspace: CreatedWorkspace, caplog: pytest.LogCaptureFixture
) -> None:
    """Copies arriving while their first copy's group waits for the database write no group of
    their own: each is answered deduped with the first one's id once that group committed, and
    logged once, with their number."""
    settings = make_settings(database_url, HOOKGATE_SCHEDULER="false")
    async with app_client(settings) as client:
        url = client.url("emailbison", workspace)
        await client.http.post(url, content=reply(1))  # the workspace is cached from now on
        groups_before = _groups_written(client)
        with caplog.at_level(logging.INFO, logger="hookgate.ingest"):
            async with writes_held(database_url):
                first = asyncio.create_task(client.http.post(url, content=reply(7)))
                await asyncio.sleep(0.3)  # its group is in flight, waiting for the lock
                copies = [
                    asyncio.create_task(client.http.post(url, content=reply(7))) for _ in range(20)
                ]
                await asyncio.sleep(0.3)
                assert not any(c.done() for c in copies)  # answered only after the commit
            answers = [await first, *await asyncio.gather(*copies)]
        assert {a.status_code for a in answers} == {200}
        assert [a.json()["deduped"] for a in answers] == [False] + [True] * 20
        assert len({a.json()["message_id"] for a in answers}) == 1
        assert _groups_written(client) == groups_before + 1
    assert await count(database_url, "messages", "email_bison_reply_id = '7'") == 1
    assert await count(database_url, "background_jobs") == 2
    [hit] = [r for r in caplog.records if r.getMessage() == "dedupe hit"]
    assert (hit.__dict__["copies"], hit.__dict__["in_flight"]) == (20, True)


def _groups_written(client: AppClient) -> float:
    text = client.app.state.runtime.metrics.render().decode()
    [line] = [ln for ln in text.splitlines() if ln.startswith("hookgate_ingest_group_size_count")]
    return float(line.split()[-1])


async def test_a_copy_bringing_interest_does_not_fold_into_a_write_without_it(
    database_url: str, db: Database, workspace: CreatedWorkspace, caplog: pytest.LogCaptureFixture
) -> None:
    """The first copy in flight is not interested, a copy arriving meanwhile is: that copy is
    written by a group of its own (a dedupe hit whose interest marks the message, or the row
    itself if its group inserts first), while a plain copy folds."""
    caplog.set_level(logging.INFO, logger="hookgate.ingest")
    async with writes_held(database_url):
        first = asyncio.create_task(
            store_message(db, workspace.id, message("k"), now=NOW, max_attempts=5)
        )
        await asyncio.sleep(0.3)
        plain = asyncio.create_task(
            store_message(db, workspace.id, message("k"), now=NOW, max_attempts=5)
        )
        news = asyncio.create_task(
            store_message(db, workspace.id, message("k", interested=True), now=NOW, max_attempts=5)
        )
        await asyncio.sleep(0.1)
    outcomes = [await first, await plain, await news]
    # On PostgreSQL the two groups wait for the lock side by side: either may insert the row.
    assert sorted(o.deduped for o in outcomes) == [False, True, True]
    assert outcomes[1].deduped  # the plain copy folded into the first one's write
    assert len({o.message_id for o in outcomes}) == 1
    assert await count(database_url, "messages", "interested") == 1
    assert await count(database_url, "leads", "interested") == 1
    assert await count(database_url, "leads") == 1
    if not database_url.startswith("sqlite"):
        # Both groups found no row and were let insert at once: the one whose insert conflicted
        # was written again, and found the row.
        raced = [r for r in caplog.records if r.getMessage() == "group written again"]
        assert [r.__dict__["raced"] for r in raced] == [1]


async def test_a_copy_folded_into_a_lost_group_is_not_stored_either(
    database_url: str, db: Database, workspace: CreatedWorkspace
) -> None:
    settings = make_settings(database_url, HOOKGATE_SCHEDULER="false", DATABASE_TIMEOUT_S="0.5")
    async with app_client(settings) as client:
        url = client.url("emailbison", workspace)
        await client.http.post(url, content=reply(1))
        async with writes_held(database_url) as pg:
            first = asyncio.create_task(client.http.post(url, content=reply(7)))
            await asyncio.sleep(0.2)
            copies = [
                asyncio.create_task(client.http.post(url, content=reply(7))) for _ in range(5)
            ]
            posts = [first, *copies]
            await lose_the_database(pg, posts)
        assert [p.result().status_code for p in posts] == [503] * 6
        assert await count(database_url, "messages") == 1
        again = await client.http.post(url, content=reply(7))
        assert (again.status_code, again.json()["deduped"]) == (200, False)


async def test_cancelled_waits_of_a_first_copy_and_its_folded_copies_disturb_no_other(
    database_url: str, db: Database, workspace: CreatedWorkspace
) -> None:
    """The first copy's client and one folded copy's client give up while the group waits: the
    message is stored and the other copies are answered with its id."""
    async with writes_held(database_url):
        first = asyncio.create_task(
            store_message(db, workspace.id, message("k"), now=NOW, max_attempts=5)
        )
        await asyncio.sleep(0.3)
        copies = [
            asyncio.create_task(
                store_message(db, workspace.id, message("k"), now=NOW, max_attempts=5)
            )
            for _ in range(4)
        ]
        await asyncio.sleep(0.1)
        first.cancel()
        copies[1].cancel()
        await asyncio.sleep(0.1)
    results = await asyncio.gather(first, *copies, return_exceptions=True)
    assert [isinstance(r, asyncio.CancelledError) for r in results] == [
        True, False, True, False, False
    ]  # fmt: skip
    answered = [r for r in results if isinstance(r, Outcome)]
    assert all(o.deduped for o in answered) and len({o.message_id for o in answered}) == 1
    assert await count(database_url, "messages") == 1


async def test_a_plain_copy_folds_into_a_write_that_brings_interest(
    database_url: str, db: Database, workspace: CreatedWorkspace
) -> None:
    """The other order: the first copy in flight carries the interest, a plain copy arrives
    meanwhile and folds (it brings nothing the group lacks); the message and lead are
    interested, and the copy was written by no group of its own."""
    groups = groups_for(db)
    async with writes_held(database_url):
        first = asyncio.create_task(
            store_message(db, workspace.id, message("k", interested=True), now=NOW, max_attempts=5)
        )
        await asyncio.sleep(0.3)
        plain = asyncio.create_task(
            store_message(db, workspace.id, message("k"), now=NOW, max_attempts=5)
        )
        await asyncio.sleep(0.1)
        assert not groups._pending  # folded, not queued for a group
    outcomes = [await first, await plain]
    assert [o.deduped for o in outcomes] == [False, True]
    assert len({o.message_id for o in outcomes}) == 1
    assert await count(database_url, "messages", "interested") == 1
    assert await count(database_url, "leads", "interested") == 1


async def test_a_copy_of_a_write_that_failed_alone_is_tried_on_its_own(
    database_url: str, db: Database, workspace: CreatedWorkspace
) -> None:
    """The first copy in flight is refused (a GoHighLevel webhookId another message holds): a
    copy folded into it gets no borrowed answer, it is written itself — and refused as well."""
    await store_message(db, workspace.id, message("a", delivery_id="wh-1"), now=NOW, max_attempts=5)
    replay = message("b", delivery_id="wh-1")
    async with writes_held(database_url):
        first = asyncio.create_task(
            store_message(db, workspace.id, replay, now=NOW, max_attempts=5)
        )
        await asyncio.sleep(0.3)
        copy = asyncio.create_task(store_message(db, workspace.id, replay, now=NOW, max_attempts=5))
        await asyncio.sleep(0.1)
    results = await asyncio.gather(first, copy, return_exceptions=True)
    assert [type(r) for r in results] == [ReplayedDelivery, ReplayedDelivery]
    assert await count(database_url, "messages") == 1


async def test_cancelled_waits_do_not_cancel_their_group(
    database_url: str, db: Database, workspace: CreatedWorkspace
) -> None:
    """A client that disconnects cancels only its own wait — also the delivery whose arrival
    started the group: the group commits every member."""
    async with writes_held(database_url):
        waits = [
            asyncio.create_task(
                store_message(db, workspace.id, message(f"k{n}"), now=NOW, max_attempts=5)
            )
            for n in range(6)
        ]
        await asyncio.sleep(0.3)
        waits[0].cancel()  # the first: its arrival started the group
        waits[3].cancel()
        await asyncio.sleep(0.1)
    results = await asyncio.gather(*waits, return_exceptions=True)
    assert [isinstance(r, asyncio.CancelledError) for r in results] == [
        True,
        False,
        False,
        True,
        False,
        False,
    ]
    assert await count(database_url, "messages") == 6
    assert await count(database_url, "background_jobs") == 6


async def test_a_cancelled_group_answers_every_member_and_stores_none(
    database_url: str, db: Database, workspace: CreatedWorkspace
) -> None:
    """The group's own task cancelled (a shutdown that cannot wait): its transaction rolls back
    and every member is answered unavailable — none is left waiting, none stored — and the
    database takes the next group (SQLite's writer is not left inside a transaction)."""
    groups = groups_for(db)
    async with writes_held(database_url):
        waits = [
            asyncio.create_task(
                store_message(db, workspace.id, message(f"k{n}"), now=NOW, max_attempts=5)
            )
            for n in range(6)
        ]
        await asyncio.sleep(0.3)
        in_flight = list(groups._writes)  # the group tasks (private: nothing else cancels them)
        assert in_flight
        for task in in_flight:
            task.cancel()
        results = await asyncio.gather(*waits, return_exceptions=True)
    assert all(isinstance(r, DatabaseUnavailable) for r in results)
    assert await count(database_url, "messages") == 0
    await store_message(db, workspace.id, message("after"), now=NOW, max_attempts=5)
    assert await count(database_url, "messages") == 1


async def test_a_group_write_cancelled_at_any_await_is_all_or_nothing(
    database_url: str, db: Database, workspace: CreatedWorkspace
) -> None:
    """The group write (three messages, two copies) cancelled at each of its awaits in turn:
    each time either nothing of the group is stored or all of it with every job, and the next
    group is stored (neither backend is left inside the cancelled transaction)."""
    cancelled_at: list[str] = []
    for at in range(1, 200):
        keys = [f"c{at}-{n}" for n in (0, 1, 2, 0, 1)]
        writes = [MessageWrite(workspace.id, message(k), NOW, 5) for k in keys]
        victim = CancelAtSuspension(_group_write(db, writes), at)
        task: asyncio.Task[None] = asyncio.create_task(victim)
        async with asyncio.timeout(10):
            await asyncio.wait([task])
        where = victim.suspensions[at - 1] if task.cancelled() else "the end"
        like = f"webhook_dedupe_key LIKE 'c{at}-%'"
        stored = await count(database_url, "messages", like)
        jobs = await count(
            database_url, "background_jobs", f"message_id IN (SELECT id FROM messages WHERE {like})"
        )
        assert (stored, jobs) in ((0, 0), (3, 3)), f"half a group stored, cancelled at {where}"
        async with asyncio.timeout(10):
            await store_message(db, workspace.id, message(f"after{at}"), now=NOW, max_attempts=5)
        if not task.cancelled():
            break
        cancelled_at.append(where)
    assert not task.cancelled() and stored == 3
    assert len(cancelled_at) >= 4, cancelled_at


async def _group_write(db: Database, writes: list[MessageWrite]) -> None:
    results = await store_group(db, writes)
    assert [type(r) for r in results] == [Outcome] * len(writes)


@pytest.mark.parametrize("linger", ["0", "2"])
async def test_linger_is_bounded_and_optional(database_url: str, linger: str) -> None:
    assert make_settings(database_url, INGEST_LINGER_MS=linger).ingest_linger_ms == float(linger)
    with pytest.raises(ValueError, match="INGEST_LINGER_MS"):
        make_settings(database_url, INGEST_LINGER_MS="50")
    with pytest.raises(ValueError, match="INGEST_BATCH_MAX"):
        make_settings(database_url, INGEST_BATCH_MAX="0")


async def test_a_shutdown_finishes_the_group_in_flight(
    database_url: str, db: Database, workspace: CreatedWorkspace
) -> None:
    """The app's lifespan ends while a group waits for the database: the shutdown waits for the
    group, which commits and answers every member before the database is closed."""
    settings = make_settings(database_url, HOOKGATE_SCHEDULER="false")
    app = create_app(settings)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as http:
        url = AppClient(http, app).url("emailbison", workspace)
        async with writes_held(database_url):
            posts = [asyncio.create_task(http.post(url, content=reply(n))) for n in range(10)]
            await asyncio.sleep(0.3)
            closing = asyncio.create_task(lifespan.__aexit__(None, None, None))
            await asyncio.sleep(0.3)
            assert not closing.done()  # waiting for the group
            assert not any(p.done() for p in posts)
        await closing
        answers = await asyncio.gather(*posts)
    assert {a.status_code for a in answers} == {200}
    assert await count(database_url, "messages") == 10
