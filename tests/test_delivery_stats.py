"""``delivery_stats`` on both backends: what the recorder counts is what the table holds — after
upserts that add to the rows there, concurrent writers that share minutes, a database that goes
away while counts are pending (they are kept, and bounded), and answers of every outcome through
the ASGI app."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest

from gateway.app import create_app
from gateway.delivery_stats import ABOVE_MS, DeliveryStats, flushing, quantile
from gateway.settings import Settings
from gateway.workspaces import WorkspaceOptions, create_workspace
from sql import Database, connect
from tests.conftest import AppClient, fixture_json, make_settings, rows
from tests.tcp_proxy import TcpProxy

MINUTE = 29_430_000  # an epoch minute: 2025-12-15 08:00 UTC
TABLE = (
    "SELECT minute, provider, outcome, latency_le_ms, deliveries, latency_ms_sum "
    "FROM delivery_stats ORDER BY minute, provider, outcome, latency_le_ms"
)


class Clock:
    def __init__(self, minute: int = MINUTE) -> None:
        self.now = minute * 60.0

    def __call__(self) -> float:
        return self.now


def stored(found: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The table's rows with the minute as epoch minutes, the latency sum rounded."""
    out = []
    for row in found:
        minute = row["minute"]
        if isinstance(minute, str):
            minute = dt.datetime.fromisoformat(minute).replace(tzinfo=dt.UTC)
        out.append(
            (
                int(minute.timestamp()) // 60,
                row["provider"],
                row["outcome"],
                row["latency_le_ms"],
                row["deliveries"],
                round(row["latency_ms_sum"], 3),
            )
        )
    return out


def totals(found: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    summed: dict[tuple[str, str], int] = {}
    for row in found:
        key = (row["provider"], row["outcome"])
        summed[key] = summed.get(key, 0) + int(row["deliveries"])
    return summed


async def test_a_write_adds_each_key_once_and_a_second_write_adds_to_it(
    db: Database, settings: Settings
) -> None:
    clock = Clock()
    stats = DeliveryStats(clock=clock)
    stats.record("emailbison", "stored", 0.0031)  # 3.1 ms: the ≤ 5 ms bucket
    stats.record("emailbison", "stored", 0.0042)
    stats.record("emailbison", "stored", 0.010)  # exactly 10 ms: the ≤ 10 ms bucket
    stats.record("ghl", "rejected", 12.5)  # slower than every bound
    clock.now += 60
    stats.record("emailbison", "deduped", 0.0005, copy_of=7)
    assert stats.pending == 5
    assert await stats.flush(db)
    assert stats.pending == 0
    stats.record("emailbison", "deduped", 0.0007, copy_of=7)
    stats.record("emailbison", "deduped", 0.0007, copy_of=8)
    async with db.transaction() as conn:
        written = await stats.write(conn)
    assert list(written.counts) == [(MINUTE + 1, "emailbison", "deduped", 0)]
    assert written.copies == {7: 1, 8: 1}
    copies = "SELECT message_id, copies FROM message_copies ORDER BY message_id"
    assert await rows(settings.database_url, copies) == [
        {"message_id": 7, "copies": 2},
        {"message_id": 8, "copies": 1},
    ]
    assert stored(await rows(settings.database_url, TABLE)) == [
        (MINUTE, "emailbison", "stored", 5, 2, 7.3),
        (MINUTE, "emailbison", "stored", 10, 1, 10.0),
        (MINUTE, "ghl", "rejected", ABOVE_MS, 1, 12500.0),
        (MINUTE + 1, "emailbison", "deduped", 1, 3, 1.9),
    ]


async def test_two_recorders_writing_the_same_minutes_at_once_lose_no_count(
    db: Database, settings: Settings
) -> None:
    """Two processes' recorders (each its own pool or SQLite connections) record and flush the
    same keys concurrently, 40 rounds each: the table holds the sum of both."""
    databases = [await connect(settings.database_url, pool_size=4) for _ in range(2)]
    clock = Clock()
    try:

        async def replica(db: Database, n: int) -> int:
            stats = DeliveryStats(clock=clock)
            recorded = 0
            for round_ in range(40):
                for i in range(n + round_ % 3):
                    provider = ("emailbison", "ghl")[i % 2]
                    stats.record(provider, ("stored", "deduped")[round_ % 2], 0.001 * (i % 7))
                    recorded += 1
                assert await stats.flush(db)
                await asyncio.sleep(0)
            return recorded

        recorded = await asyncio.gather(replica(databases[0], 5), replica(databases[1], 7))
    finally:
        for db in databases:
            await db.close()
    found = await rows(settings.database_url, TABLE)
    assert sum(int(row["deliveries"]) for row in found) == sum(recorded)
    assert {row["outcome"] for row in found} == {"stored", "deduped"}


@asynccontextmanager
async def outage(database_url: str) -> AsyncIterator[tuple[str, Callable[[bool], Awaitable[None]]]]:
    """A URL to ``database_url`` and ``down(True|False)``: PostgreSQL behind a proxy that is cut;
    SQLite with another process holding the file's lock (past a 0.3 s busy timeout)."""
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        blocker = sqlite3.connect(path, isolation_level=None)

        async def lock(down: bool) -> None:
            blocker.execute("BEGIN EXCLUSIVE" if down else "ROLLBACK")

        try:
            yield database_url, lock
        finally:
            if blocker.in_transaction:
                blocker.execute("ROLLBACK")
            blocker.close()
        return
    port = int(database_url.split("@", 1)[1].split("/")[0].split(":")[1])
    proxy = TcpProxy("127.0.0.1", port)
    await proxy.start()

    async def cut(down: bool) -> None:
        await (proxy.cut() if down else proxy.restore())

    try:
        yield proxy.url(database_url), cut
    finally:
        await proxy.close()


async def retried(flush: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(50):  # the pool reconnects by itself; bounded
        if await flush():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the database did not come back")


async def test_a_failed_write_keeps_its_counts_for_the_next_and_past_the_cap_drops_the_oldest(
    db: Database, settings: Settings
) -> None:
    clock = Clock()
    dropped: list[float] = []
    stats = DeliveryStats(max_minutes=3, on_drop=dropped.append, clock=clock)
    async with outage(settings.database_url) as (url, down):
        target = await connect(url, timeout_s=0.3)
        try:
            await down(True)
            for minute in range(5):  # five minutes of deliveries while the database is away
                for _ in range(minute + 1):
                    stats.record("unipile", "stored", 0.002)
                stats.record("unipile", "deduped", 0.002, copy_of=minute)
                assert not await stats.flush(target)
                clock.now += 60
            assert dropped == [2, 3]  # minutes 0 and 1: past three minutes pending
            assert stats.pending == 4 + 5 + 6
            await down(False)
            await retried(lambda: stats.flush(target))
        finally:
            await target.close()
    found = stored(await rows(settings.database_url, TABLE))
    assert found == [
        row
        for m in (2, 3, 4)
        for row in (
            (MINUTE + m, "unipile", "deduped", 2, 1, 2.0),
            (MINUTE + m, "unipile", "stored", 2, m + 1, 2.0 * (m + 1)),
        )
    ]
    kept = await rows(settings.database_url, "SELECT message_id, copies FROM message_copies")
    assert sorted(row["message_id"] for row in kept) == [0, 1, 2, 3, 4]  # ids are capped apart


async def test_the_flusher_writes_every_interval_and_at_the_end_and_purges_old_minutes(
    db: Database, settings: Settings
) -> None:
    url = settings.database_url
    stale = "INSERT INTO delivery_stats VALUES ($1, 'ghl', 'stored', 1, 1, 0.5)"
    await rows(url, stale, dt.datetime.now(dt.UTC) - dt.timedelta(days=9))
    stats = DeliveryStats()
    async with flushing(stats, db, interval_s=0.05):
        stats.record("smartlead", "stored", 0.002)
        for _ in range(100):  # bounded: the first flush comes within 0.05 s
            found = await rows(url, TABLE)
            if [r["provider"] for r in found] == ["smartlead"]:
                break
            await asyncio.sleep(0.05)
        assert totals(found) == {("smartlead", "stored"): 1}  # written, and the old minute gone
        stats.record("smartlead", "ignored", 0.002)
    assert totals(await rows(url, TABLE)) == {
        ("smartlead", "stored"): 1,
        ("smartlead", "ignored"): 1,  # the last flush, as the block ended
    }


def test_quantiles_come_from_the_bucket_counts() -> None:
    buckets = [(5, 50.0), (10, 30.0), (50, 19.0), (ABOVE_MS, 1.0)]
    assert quantile(buckets, 0.5) == 5.0  # the 50th of 100 is the last in ≤ 5 ms
    assert quantile(buckets, 0.65) == pytest.approx(7.5)  # halfway through (5, 10]
    assert quantile(buckets, 0.99) == 50.0
    assert quantile(buckets, 1.0) == 10000.0  # above every bound: the largest bound
    assert quantile([(2, 4.0)], 0.5) == pytest.approx(1.5)  # (1, 2], not (0, 2]
    assert quantile([], 0.5) is None


def delivery(reply_id: int | str, event: str = "LEAD_REPLIED") -> bytes:
    payload = fixture_json("emailbison/lead_replied.json")
    payload["event"]["type"] = event
    payload["data"]["reply"]["id"] = reply_id
    return json.dumps(payload).encode()


# A message whose body is "boom" fails to insert with an error that is no outage: a 500.
BOOM = {
    "sqlite": (
        "CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.body = 'boom' "
        "BEGIN SELECT RAISE(ABORT, 'boom'); END",
    ),
    "postgres": (
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN IF NEW.body = 'boom' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER boom BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION boom()",
    ),
}
UNBOOM = {"sqlite": ("DROP TRIGGER boom",), "postgres": ("DROP FUNCTION boom() CASCADE",)}


async def test_every_answer_through_the_app_is_counted_by_outcome(database_url: str) -> None:
    """N deliveries of each outcome: the table holds exactly those counts once the app stops."""
    n = 3
    async with outage(database_url) as (url, down):
        settings = make_settings(url, DATABASE_TIMEOUT_S="0.3")
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            db: Database = app.state.runtime.db
            workspace = await create_workspace(db, "Acme", WorkspaceOptions())
            dialect = db.dialect
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as http:
                client = AppClient(http, app)
                good = client.url("emailbison", workspace)
                post = http.post

                async def answers(urls: list[str], bodies: list[bytes]) -> list[int]:
                    return [
                        (await post(u, content=b)).status_code
                        for u, b in zip(urls, bodies, strict=True)
                    ]

                assert await answers([good] * n, [delivery(i) for i in range(n)]) == [200] * n
                first = await http.post(good, content=delivery(0))  # the first of n copies
                first_id = first.json()["message_id"]
                assert await answers([good] * (n - 1), [delivery(0)] * (n - 1)) == [200] * (n - 1)
                ignored = [delivery(100 + i, "EMAIL_OPENED") for i in range(n)]
                assert await answers([good] * n, ignored) == [200] * n
                unreadable = [
                    json.dumps({"event": {"type": "LEAD_REPLIED"}, "data": {"n": i}}).encode()
                    for i in range(n)
                ]
                assert await answers([good] * n, unreadable) == [202] * n
                wrong = client.url("emailbison", workspace, token="wrong")
                assert await answers([wrong] * n, [delivery(1)] * n) == [401] * n
                ghl = client.url("ghl", workspace)
                assert await answers([ghl] * n, [b"[1]"] * n) == [400] * n
                await down(True)
                refused = [delivery(200 + i) for i in range(n)]
                assert await answers([good] * n, refused) == [503] * n
                await down(False)
                await retried(lambda: app.state.runtime.delivery_stats.flush(db))
                boom = fixture_json("emailbison/lead_replied.json")
                boom["data"]["reply"].update(id=300, text_body="boom")
                bodies = [json.dumps(boom).encode()] * n
                for statement in BOOM[dialect]:
                    await rows(database_url, statement)
                try:
                    assert await answers([good] * n, bodies) == [500] * n
                finally:
                    for statement in UNBOOM[dialect]:
                        await rows(database_url, statement)
    copies = await rows(database_url, "SELECT message_id, copies FROM message_copies")
    assert copies == [{"message_id": first_id, "copies": n}]  # the n copies of the first reply
    found = await rows(database_url, TABLE)
    assert totals(found) == {
        ("emailbison", "stored"): n,
        ("emailbison", "deduped"): n,
        ("emailbison", "ignored"): n,
        ("emailbison", "quarantined"): n,
        ("emailbison", "rejected"): n,
        ("ghl", "rejected"): n,
        ("emailbison", "unavailable"): n,
        ("emailbison", "error"): n,
    }
    assert all(row["latency_ms_sum"] > 0 for row in found)
