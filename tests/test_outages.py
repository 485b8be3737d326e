"""A database that drops away: answers are 503 + Retry-After within seconds, nothing that was
answered 200 is lost, and the gateway recovers by itself.  Also cancellation mid-transaction."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx2
import pytest

from gateway.app import create_app
from gateway.ingest import Lead, Message, store_message
from gateway.workspaces import CreatedWorkspace, WorkspaceOptions, create_workspace
from sql import Database, DatabaseUnavailable, connect, is_connection_lost
from sql.migrations import discover
from tests.conftest import AppClient, count, fixture_json, make_settings
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
