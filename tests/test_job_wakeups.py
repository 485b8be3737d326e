"""Wake-ups for jobs made due elsewhere (scheduler/wakeups.py), in one test process:
migration 008's trigger notifies exactly when a row becomes pending and due; the PostgreSQL
listener nudges per notification and once after every (re)connection; the SQLite watcher
nudges for every commit that changed the file, whoever made it.  The real processes are in
test_job_wakeups_processes.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from gateway.app import create_app
from gateway.metrics import Metrics
from gateway.runtime import Runtime
from gateway.workspaces import WorkspaceCache
from scheduler import queue
from scheduler.wakeups import CHANNEL, JobWakeups
from sql import Database, connect
from sql.migrations import discover
from tests.conftest import make_settings, rows
from tests.test_scheduler_processes import done_log, wait_for

DUE = "now() - interval '1 second'"
LATER = "now() + interval '1 hour'"


def insert(status: str, run_at: str, key: str = "T:1") -> str:
    return (
        "INSERT INTO background_jobs (type, dedupe_key, status, run_at) "
        f"VALUES ('T', '{key}', '{status}', {run_at})"
    )


def update(assignments: str) -> str:
    return f"UPDATE background_jobs SET {assignments}"


class Notifications:
    """A connection of the test's own listening on the wake-up channel."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.payloads: asyncio.Queue[str] = asyncio.Queue()

    async def listen(self) -> None:
        await self.conn.add_listener(CHANNEL, lambda *args: self.payloads.put_nowait(args[3]))

    async def count_until_fence(self, writer: asyncpg.Connection) -> int:
        """Wake-ups notified before a fence that ``writer`` sends now (notifications arrive in
        commit order)."""
        await writer.execute(f"SELECT pg_notify('{CHANNEL}', 'fence')")
        n = 0
        async with asyncio.timeout(10):
            while (await self.payloads.get()) != "fence":
                n += 1
        return n


@pytest.mark.parametrize(
    ("setup", "change", "wakeups"),
    [
        pytest.param([], [insert("pending", DUE)], 1, id="enqueued"),
        pytest.param(
            [], [insert("pending", DUE, f"T:{i}") for i in range(50)], 1, id="group-of-50"
        ),
        pytest.param([], [insert("pending", LATER)], 0, id="enqueued-for-later"),
        pytest.param([insert("pending", DUE)], [update("status = 'running'")], 0, id="claimed"),
        pytest.param(
            [insert("running", DUE)], [update(f"status = 'pending', run_at = {DUE}")], 1,
            id="handed-back",
        ),
        pytest.param(
            [insert("running", DUE)], [update(f"status = 'pending', run_at = {LATER}")], 0,
            id="retry-after-backoff",
        ),
        pytest.param([insert("running", DUE)], [update("status = 'succeeded'")], 0, id="done"),
        pytest.param([insert("running", DUE)], [update("status = 'dead'")], 0, id="buried"),
        pytest.param(
            [insert("dead", DUE)], [update("status = 'pending', run_at = now()")], 1, id="revived"
        ),
        pytest.param(
            [insert("dead", DUE)],
            [
                insert("pending", "now()")
                + " ON CONFLICT (dedupe_key) DO UPDATE SET status = 'pending', run_at = now()"
            ],
            1,
            id="re-enqueued-over-dead",
        ),
        pytest.param(
            [insert("pending", LATER)], [update("run_at = now()")], 1, id="backoff-cut-short"
        ),
        pytest.param(
            [insert("pending", DUE)],
            [update("updated_at = now()"), update("run_at = now()")],
            0,
            id="due-job-touched",
        ),
    ],
)  # fmt: skip
async def test_the_trigger_notifies_once_per_transaction_that_makes_jobs_due(
    postgres_url: str, setup: list[str], change: list[str], wakeups: int
) -> None:
    writer = await asyncpg.connect(postgres_url)
    notifications = Notifications(await asyncpg.connect(postgres_url))
    try:
        await notifications.listen()
        for statement in setup:
            await writer.execute(statement)
        await notifications.count_until_fence(writer)
        async with writer.transaction():
            for statement in change:
                await writer.execute(statement)
        assert await notifications.count_until_fence(writer) == wakeups
    finally:
        await writer.close()
        await notifications.conn.close()


async def test_a_rolled_back_enqueue_notifies_nobody(postgres_url: str) -> None:
    writer = await asyncpg.connect(postgres_url)
    notifications = Notifications(await asyncpg.connect(postgres_url))
    try:
        await notifications.listen()
        transaction = writer.transaction()
        await transaction.start()
        await writer.execute(insert("pending", DUE))
        await transaction.rollback()
        assert await notifications.count_until_fence(writer) == 0
    finally:
        await writer.close()
        await notifications.conn.close()


class Nudges:
    """A runner's ``nudge`` that counts: each call is one item to take."""

    def __init__(self) -> None:
        self.calls: asyncio.Queue[None] = asyncio.Queue()

    def __call__(self) -> None:
        self.calls.put_nowait(None)

    async def next(self) -> None:
        await asyncio.wait_for(self.calls.get(), 10)


def make_runtime(db: Database, database_url: str) -> Runtime:
    settings = make_settings(database_url)
    return Runtime(settings, db, Metrics(), WorkspaceCache(db, settings.workspace_cache_ttl_s))


async def enqueue(db: Database, key: str) -> None:
    assert await queue.enqueue(db, "T", key, max_attempts=1)


async def enqueue_probe(db: Database, n: int, root: Path) -> None:
    job_id = await queue.enqueue(
        db,
        "TEST_PROBE",
        f"TEST_PROBE:{n}",
        max_attempts=1,
        payload={"dir": str(root)},
    )
    assert job_id is not None


async def run_probes_one_after_another(url: str, db: Database, root: Path, numbers: range) -> None:
    """Enqueue each probe once the one before it succeeded (bounded far below the poll)."""
    for n in numbers:
        await enqueue_probe(db, n, root)
        await wait_for(url, "status = 'succeeded'", n, timeout_s=15)


async def listener_pids(database_url: str) -> list[int]:
    found = await rows(
        database_url,
        "SELECT pid FROM pg_stat_activity "
        "WHERE datname = current_database() AND query LIKE 'LISTEN %'",
    )
    return [int(r["pid"]) for r in found]


async def test_the_listener_nudges_per_notification_and_after_every_reconnection(
    postgres_url: str,
) -> None:
    db = await connect(postgres_url)
    nudges = Nudges()
    wakeups = JobWakeups(make_runtime(db, postgres_url), nudges)

    wakeups.start()
    try:
        await nudges.next()  # connected: one nudge for whatever was due before it listened
        await enqueue(db, "T:1")
        await nudges.next()
        (first,) = await listener_pids(postgres_url)
        await rows(postgres_url, "SELECT pg_terminate_backend($1)", first)
        await nudges.next()  # reconnected by itself; what was notified in between is gone
        (second,) = await listener_pids(postgres_url)
        assert second != first
        await enqueue(db, "T:2")
        await nudges.next()  # the new connection listens
    finally:
        await wakeups.stop()
        await db.close()
    async with asyncio.timeout(10):
        while await listener_pids(postgres_url):  # noqa: ASYNC110  # the server's own pace
            await asyncio.sleep(0.02)  # it ends the session after the listener dropped it


async def test_the_sqlite_watcher_nudges_for_every_commit_that_changed_the_file(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'hookgate.db'}"
    db = await connect(url)
    await db.apply_migrations(discover(db.dialect))
    other = await connect(url)  # connections of its own, as another process has
    nudges = Nudges()
    wakeups = JobWakeups(make_runtime(db, url), nudges)

    wakeups.start()
    try:
        await nudges.next()  # the first look: whatever was committed before it may be due
        await enqueue(other, "T:1")
        await nudges.next()
        await enqueue(db, "T:2")  # this process's own enqueue, which no webhook announced
        await nudges.next()
        await queue.JobQueue(other, "w").release([])  # changes nothing
        await queue.JobQueue(db, "w").release([])
        await asyncio.sleep(0.3)  # many looks later
        assert nudges.calls.empty()
        await enqueue(other, "T:3")
        await nudges.next()
    finally:
        await wakeups.stop()
        await other.close()
        await db.close()


async def test_an_enqueue_that_no_webhook_announced_starts_without_a_poll(
    database_url: str, tmp_path: Path
) -> None:
    # A draft send, a replay, a job's own enqueue: nothing calls Runtime.job_due for them.
    settings = make_settings(
        database_url, JOB_POLL_INTERVAL_MS="600000", JOB_HANDLER_MODULES="tests.scheduler_probe"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        db = app.state.runtime.db
        await run_probes_one_after_another(database_url, db, tmp_path, range(1, 4))
    assert sorted(job_id for job_id, _ in done_log(tmp_path)) == [1, 2, 3]
