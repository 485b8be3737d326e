"""Helpers for the job-runner and cron tests: runtimes with skewed clocks, jobs to run, and the
database's clock moved on.

The runner and the crons compare every lease and due time with the database's ``now()``, which a
test cannot move on a real server.  ``time_passes`` moves the rows instead: it shifts every time
that is compared with ``now()`` (a job's ``run_at`` and ``locked_until``, a cron lease's
``expires_at``) back by the same amount, which is what those comparisons see when the clock
moves on.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Callable
from typing import Any

import asyncpg

from gateway.metrics import Metrics
from gateway.runtime import Runtime, utc_now
from gateway.settings import Settings
from gateway.workspaces import WorkspaceCache
from scheduler import queue
from sql import Database, Row

# Each statement takes the shift as $1: PostgreSQL seconds, SQLite a date-function modifier
# ("-30 seconds"), its result written in the port's timestamp format.
_SQLITE_BACK = "strftime('%Y-%m-%d %H:%M:%f000', {}, $1)"
_SHIFTS = {
    "postgres": (
        "UPDATE background_jobs SET run_at = run_at - make_interval(secs => $1),"
        " locked_until = locked_until - make_interval(secs => $1)",
        "UPDATE cron_leases SET expires_at = expires_at - make_interval(secs => $1)",
    ),
    "sqlite": (
        f"UPDATE background_jobs SET run_at = {_SQLITE_BACK.format('run_at')},"
        f" locked_until = {_SQLITE_BACK.format('locked_until')}",
        f"UPDATE cron_leases SET expires_at = {_SQLITE_BACK.format('expires_at')}",
    ),
}


def skewed(seconds: float) -> Callable[[], dt.datetime]:
    """A replica's clock that runs ``seconds`` ahead of the real one (behind when negative)."""
    offset = dt.timedelta(seconds=seconds)
    return lambda: utc_now() + offset


def make_runtime(
    db: Database, settings: Settings, clock: Callable[[], dt.datetime] = utc_now
) -> Runtime:
    return Runtime(
        settings=settings, db=db, metrics=Metrics(), workspaces=WorkspaceCache(db, 5), clock=clock
    )


async def execute(database_url: str, sql: str, *args: Any) -> None:
    """Run one statement straight through the driver and commit it (``$1`` parameters, as
    ``tests.conftest.rows`` takes them)."""
    if database_url.startswith("sqlite:///"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        try:
            conn.execute(re.sub(r"\$(\d+)", r"?\1", sql), args)
            conn.commit()
        finally:
            conn.close()
        return
    pg = await asyncpg.connect(database_url)
    try:
        await pg.execute(sql, *args)
    finally:
        await pg.close()


async def time_passes(database_url: str, seconds: float) -> None:
    """The database's clock moves on by ``seconds``, as far as jobs and cron leases can tell."""
    sqlite = database_url.startswith("sqlite:///")
    shift: float | str = f"-{seconds} seconds" if sqlite else float(seconds)
    for statement in _SHIFTS["sqlite" if sqlite else "postgres"]:
        await execute(database_url, statement, shift)


async def add_jobs(
    db: Database, job_type: str, n: int = 1, *, max_attempts: int = 5, **payload: Any
) -> list[int]:
    ids = []
    for i in range(n):
        job_id = await queue.enqueue(
            db, job_type, f"{job_type}:{i}", max_attempts=max_attempts, payload=payload
        )
        assert job_id is not None
        ids.append(job_id)
    return ids


async def job_row(db: Database, job_id: int) -> Row:
    found = [r for r in await queue.list_jobs(db, limit=10_000) if r["id"] == job_id]
    assert len(found) == 1
    return found[0]
