"""A database that drops away, turns read-only or times out: answers are 503 + Retry-After (429
on GoHighLevel) within seconds, nothing that was answered 200 is lost, and the gateway recovers
by itself.  Also cancellation mid-transaction, and which server errors are outages."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import pytest

from gateway.app import create_app
from gateway.events import Lead, Message
from gateway.ingest import store_message
from gateway.workspaces import CreatedWorkspace, WorkspaceOptions, create_workspace
from sql import Database, DatabaseUnavailable, connect, is_connection_lost
from sql.migrations import discover
from tests.conftest import AppClient, count, empty_pg_database, fixture_json, make_settings
from tests.tcp_proxy import TcpProxy


def delivery(reply_id: int) -> bytes:
    payload = fixture_json("emailbison/lead_replied.json")
    payload["data"]["reply"]["id"] = reply_id
    return json.dumps(payload).encode()


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy("127.0.0.1", int(postgres_url.split("@", 1)[1].split("/")[0].split(":")[1]))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def test_postgres_gone_is_503_then_recovers_by_itself(
    postgres_url: str, proxy: TcpProxy
) -> None:
    settings = make_settings(proxy.url(postgres_url), DATABASE_TIMEOUT_S="1")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        db: Database = app.state.runtime.db
        workspace = await create_workspace(db, "Acme", WorkspaceOptions())
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
            client = AppClient(http, app)
            url = client.url("emailbison", workspace)
            assert (await http.post(url, content=delivery(1))).status_code == 200

            await proxy.cut()
            started = time.monotonic()
            answer = await http.post(url, content=delivery(2))
            waited = time.monotonic() - started
            assert answer.status_code == 503
            assert answer.headers["retry-after"] == "5"
            assert answer.json() == {
                "success": False,
                "error": "database unavailable, retry later",
                "retryable": True,
            }
            assert waited < 5, f"the 503 took {waited:.1f} s"
            assert (await http.get("/readyz")).status_code == 503

            await proxy.restore()
            for _ in range(50):  # the pool reconnects on its own; bounded wait
                answer = await http.post(url, content=delivery(2))
                if answer.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert answer.status_code == 200
            assert answer.json()["deduped"] is False
    assert await count(postgres_url, "messages") == 2


async def test_sqlite_locked_past_the_busy_timeout_is_503(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    settings = make_settings(f"sqlite:///{path}", DATABASE_TIMEOUT_S="0.3")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        workspace = await create_workspace(app.state.runtime.db, "Acme", WorkspaceOptions())
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
            url = AppClient(http, app).url("emailbison", workspace)
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                answer = await http.post(url, content=delivery(1))
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            assert answer.status_code == 503
            assert (await http.post(url, content=delivery(1))).status_code == 200


async def test_refused_connection_is_classified_as_lost() -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        await connect("postgresql://postgres@127.0.0.1:9/none", timeout_s=1)
    assert is_connection_lost(caught.value)


async def test_cancelled_transactions_leave_no_session_idle_in_transaction(
    postgres_url: str,
) -> None:
    """200 deliveries cancelled at random points mid-transaction: every connection goes back
    rolled back (or is closed), and the gateway keeps storing."""
    db = await connect(postgres_url, pool_size=16)
    await db.apply_migrations(discover(db.dialect))
    workspace: CreatedWorkspace = await create_workspace(db, "Acme", WorkspaceOptions())
    rng = random.Random(7)

    async def deliver(i: int) -> None:
        message = Message(
            event="LEAD_REPLIED",
            provider="emailbison",
            channel="email",
            direction="inbound",
            key_column="email_bison_reply_id",
            key_value=str(i % 50),
            lead=Lead(email=f"lead{i % 20}@example.com"),
            body="hi",
        )
        await store_message(db, workspace.id, message, now=dt.datetime.now(dt.UTC), max_attempts=5)

    try:
        tasks = [asyncio.create_task(deliver(i)) for i in range(200)]
        for task in tasks:
            await asyncio.sleep(rng.uniform(0, 0.002))
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = sum(isinstance(o, asyncio.CancelledError) for o in outcomes)
        assert cancelled > 0, "no delivery was cancelled: the test proved nothing"
        await asyncio.sleep(0.2)
        database = postgres_url.rsplit("/", 1)[1]
        admin = await asyncpg.connect(postgres_url)
        try:
            stuck = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = $1 AND state LIKE 'idle in transaction%'",
                database,
            )
        finally:
            await admin.close()
        assert stuck == 0
        await deliver(10_000)  # still answers
        stored = await db.fetch_all("ping")
        assert stored == [{"ok": 1}]
    finally:
        await db.close()


@pytest.fixture
async def own_pg_url(pg_server_url: str) -> AsyncIterator[str]:
    """A migrated PostgreSQL database of this test's own, whose settings the test may change
    with ``ALTER DATABASE … SET`` (they apply to connections opened afterwards)."""
    async with empty_pg_database(pg_server_url, "hg_outage") as url:
        db = await connect(url)
        try:
            await db.apply_migrations(discover(db.dialect))
        finally:
            await db.close()
        yield url


async def alter_database(url: str, change: str, *, drop_connections: bool = False) -> None:
    """``ALTER DATABASE <it> <change>``; with ``drop_connections``, also end every other session
    on it (what a failover does to the connections of the old primary)."""
    name = url.rsplit("/", 1)[1]
    # A session of its own may write whatever the database's defaults have become.
    admin = await asyncpg.connect(url, server_settings={"default_transaction_read_only": "off"})
    try:
        await admin.execute(f'ALTER DATABASE "{name}" {change}')
        if drop_connections:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
    finally:
        await admin.close()


def ghl_delivery(message_id: str) -> bytes:
    return json.dumps(
        {**fixture_json("gohighlevel/inbound_message_sms.json"), "messageId": message_id}
    ).encode()


def unavailable_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        str(r.__dict__["error"]) for r in caplog.records if r.getMessage() == "database unavailable"
    ]


async def test_a_database_turned_read_only_by_a_failover_is_503_or_429_on_ghl_until_it_returns(
    own_pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The connections to the old primary are cut and the new ones land on a server that only
    reads (SQLSTATE 25006 on the first write): retry later, never 500, and nothing is lost."""
    app = create_app(make_settings(own_pg_url, HOOKGATE_SCHEDULER="0"))
    async with app.router.lifespan_context(app):
        workspace = await create_workspace(app.state.runtime.db, "Acme", WorkspaceOptions())
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
            client = AppClient(http, app)
            emailbison, ghl = client.url("emailbison", workspace), client.url("ghl", workspace)
            assert (await http.post(emailbison, content=delivery(1))).status_code == 200

            await alter_database(
                own_pg_url, "SET default_transaction_read_only = on", drop_connections=True
            )
            with caplog.at_level(logging.WARNING, logger="hookgate.webhooks"):
                refused = [await http.post(emailbison, content=delivery(2)) for _ in range(3)]
                refused_ghl = [await http.post(ghl, content=ghl_delivery("Mg-1")) for _ in range(3)]
            for answer, status in [(a, 503) for a in refused] + [(a, 429) for a in refused_ghl]:
                assert answer.status_code == status
                assert answer.headers["retry-after"] == "5"
                assert answer.json()["retryable"] is True
            # The workspace is read (a read-only server still answers reads); the write is refused.
            assert any("(25006)" in error for error in unavailable_errors(caplog))

            await alter_database(
                own_pg_url, "RESET default_transaction_read_only", drop_connections=True
            )
            stored = await _post_until_stored(http, emailbison, delivery(2))
            stored_ghl = await _post_until_stored(http, ghl, ghl_delivery("Mg-1"))
            assert stored.json()["deduped"] is False and stored_ghl.json()["deduped"] is False
    assert await count(own_pg_url, "messages") == 3


@pytest.mark.parametrize(
    ("setting", "sqlstate"), [("lock_timeout", "55P03"), ("statement_timeout", "57014")]
)
async def test_a_write_that_outwaits_a_lock_or_statement_timeout_is_503(
    own_pg_url: str, caplog: pytest.LogCaptureFixture, setting: str, sqlstate: str
) -> None:
    """A table lock held elsewhere (a migration, a long maintenance job) makes the insert wait
    until the database's own timeout cancels it: retry later, and the retry is stored."""
    await alter_database(own_pg_url, f"SET {setting} = '300ms'")
    app = create_app(make_settings(own_pg_url, HOOKGATE_SCHEDULER="0"))
    async with app.router.lifespan_context(app):
        workspace = await create_workspace(app.state.runtime.db, "Acme", WorkspaceOptions())
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
            url = AppClient(http, app).url("emailbison", workspace)
            locker = await asyncpg.connect(own_pg_url)
            try:
                async with locker.transaction():
                    await locker.execute("LOCK TABLE messages IN EXCLUSIVE MODE")
                    with caplog.at_level(logging.WARNING, logger="hookgate.webhooks"):
                        answer = await http.post(url, content=delivery(1))
            finally:
                await locker.close()
            assert answer.status_code == 503
            assert answer.headers["retry-after"] == "5"
            assert [e for e in unavailable_errors(caplog) if f"({sqlstate})" in e]
            assert (await http.post(url, content=delivery(1))).json()["deduped"] is False
    assert await count(own_pg_url, "messages") == 1


async def _post_until_stored(http: httpx2.AsyncClient, url: str, body: bytes) -> Any:
    for _ in range(50):  # the pool reconnects on its own; bounded wait
        answer = await http.post(url, content=body)
        if answer.status_code == 200:
            return answer
        await asyncio.sleep(0.1)
    raise AssertionError(f"still {answer.status_code} after 5 s: {answer.text}")


LEASE = {"holder": "h", "manual": False, "lease_s": 0.0}


async def take_lease(db: Any, name: str) -> None:
    await db.execute("take_cron_lease", name=name, **LEASE)


async def test_a_transaction_that_loses_a_serialization_race_is_retryable(own_pg_url: str) -> None:
    await alter_database(own_pg_url, "SET default_transaction_isolation = 'repeatable read'")
    db = await connect(own_pg_url, pool_size=2)
    try:
        await take_lease(db, "race")
        with pytest.raises(DatabaseUnavailable, match=r"\(40001\)"):
            async with db.transaction() as late:
                await late.fetch_one("ping")  # its snapshot is taken here
                await take_lease(db, "race")  # another transaction changes the row and commits
                await take_lease(late, "race")
        await take_lease(db, "race")  # retried, it succeeds
    finally:
        await db.close()


async def test_the_victim_of_a_deadlock_is_retryable_and_the_other_transaction_commits(
    own_pg_url: str,
) -> None:
    await alter_database(own_pg_url, "SET deadlock_timeout = '100ms'")
    db = await connect(own_pg_url, pool_size=2)
    both_hold_one = asyncio.Barrier(2)

    async def cross(first: str, second: str) -> None:
        async with db.transaction() as conn:
            await take_lease(conn, first)
            await both_hold_one.wait()
            await take_lease(conn, second)

    try:
        for name in ("a", "b"):
            await take_lease(db, name)
        outcomes = await asyncio.wait_for(
            asyncio.gather(cross("a", "b"), cross("b", "a"), return_exceptions=True), 10
        )
    finally:
        await db.close()
    [victim] = [o for o in outcomes if o is not None]
    assert isinstance(victim, DatabaseUnavailable) and "(40P01)" in str(victim), outcomes


async def test_a_session_ended_by_the_administrator_is_retryable(own_pg_url: str) -> None:
    """``pg_terminate_backend`` (what a failover or a restart does to a session) while the
    statement waits (57P01, which asyncpg reports as the connection closing under the statement),
    and the pool's next connection works."""
    db = await connect(own_pg_url, pool_size=1)
    name = own_pg_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(own_pg_url)
    try:
        async with admin.transaction():
            await admin.execute("LOCK TABLE cron_leases IN EXCLUSIVE MODE")
            waiting = asyncio.create_task(take_lease(db, "ended"))
            for _ in range(200):  # until the statement waits for the lock; bounded
                pid = await admin.fetchval(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = $1 AND wait_event_type = 'Lock'",
                    name,
                )
                if pid is not None:
                    break
                await asyncio.sleep(0.05)
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
            with pytest.raises(DatabaseUnavailable, match="administrator command"):
                await asyncio.wait_for(waiting, 10)
        await take_lease(db, "ended")
    finally:
        await admin.close()
        await db.close()
