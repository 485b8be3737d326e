"""Reviving a job, on both backends (migration 010).  Every path that moves a job from dead or
succeeded back to pending — the enqueue's reset semantics, a dedupe hit, ``hookgate jobs retry``
(one and ``--dead``), a re-run — leaves a clean pending job: no attempts, no error, not
finished, unlocked.  The trigger that does it leaves the claim and finish transitions alone, and
a re-run owed by a run (``rerun``) is honoured only by that run's own claim."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.settings import Settings
from scheduler import queue
from scheduler.queue import Job, JobQueue
from sql import Database
from tests.conftest import rows
from tests.jobs_support import time_passes

TYPE = "REVIVAL_TEST"
KEY = f"{TYPE}:1"
STATE = (
    "SELECT status, attempts, last_error, finished_at, locked_by, locked_until,"
    " CAST(rerun AS INTEGER) AS rerun FROM background_jobs"
)
CLEAN = {
    "status": "pending",
    "attempts": 0,
    "last_error": None,
    "finished_at": None,
    "locked_by": None,
    "locked_until": None,
    "rerun": 0,
}


@pytest.fixture
def url(settings: Settings) -> str:
    return settings.database_url


async def state(url: str) -> dict[str, Any]:
    [row] = await rows(url, STATE)
    return row


async def claim_one(db: Database) -> Job:
    [job] = await JobQueue(db, "test-worker").claim(1, lease_s=30)
    return job


async def ended(db: Database, url: str, how: str) -> None:
    """One job, run once and ended ``dead`` (its last attempt failed) or ``succeeded``."""
    assert await queue.enqueue(db, TYPE, KEY, max_attempts=1) is not None
    job = await claim_one(db)
    jobs = JobQueue(db, "test-worker")
    assert await (jobs.bury(job, error="boom") if how == "dead" else jobs.succeed(job))
    found = await state(url)
    assert (found["status"], found["attempts"]) == (how, 1)
    assert found["finished_at"] is not None


async def by_enqueue(db: Database) -> object:
    return await queue.enqueue(db, TYPE, KEY, max_attempts=1)


async def by_dedupe_hit(db: Database) -> object:
    return await db.execute("requeue_dead_jobs", dedupe_keys=f'["{KEY}"]')


async def by_retry(db: Database) -> object:
    [job] = await queue.list_jobs(db)
    return await queue.retry_job(db, int(job["id"]))


async def by_retry_dead(db: Database) -> object:
    return await queue.retry_dead_jobs(db)


async def by_rerun(db: Database) -> object:
    return await db.execute("rerun_jobs", dedupe_keys=f'["{KEY}"]')


REVIVALS: dict[str, Callable[[Database], Awaitable[object]]] = {
    "enqueue": by_enqueue,
    "dedupe-hit": by_dedupe_hit,
    "retry": by_retry,
    "retry-dead": by_retry_dead,
    "rerun": by_rerun,
}


@pytest.mark.parametrize("revive", REVIVALS, ids=list(REVIVALS))
async def test_every_revival_of_a_dead_job_leaves_a_clean_pending_job(
    db: Database, url: str, revive: str
) -> None:
    await ended(db, url, "dead")
    assert await REVIVALS[revive](db)
    assert await state(url) == CLEAN
    assert (await claim_one(db)).attempts == 1  # and due now


async def test_a_rerun_of_a_succeeded_job_leaves_a_clean_pending_job(
    db: Database, url: str
) -> None:
    await ended(db, url, "succeeded")
    for revive in ("enqueue", "dedupe-hit", "retry", "retry-dead"):
        await REVIVALS[revive](db)  # none of them touches a succeeded job
        assert (await state(url))["status"] == "succeeded"
    assert await by_rerun(db) == 1
    assert await state(url) == CLEAN
    assert (await claim_one(db)).attempts == 1  # and due now


async def test_claims_and_finishes_keep_their_attempts_errors_and_times(
    db: Database, url: str
) -> None:
    await queue.enqueue(db, TYPE, KEY, max_attempts=2)
    jobs = JobQueue(db, "test-worker")
    job = await claim_one(db)
    assert (await state(url))["attempts"] == 1 and (await state(url))["locked_by"] == "test-worker"
    assert await jobs.retry_later(job, error="first", delay_s=0)
    found = await state(url)
    assert (found["status"], found["attempts"], found["last_error"]) == ("pending", 1, "first")
    assert await by_retry(db)  # a pending job due now keeps its attempts and error
    assert (await state(url))["attempts"] == 1 and (await state(url))["last_error"] == "first"
    assert await jobs.bury(await claim_one(db), error="second")
    found = await state(url)
    assert (found["status"], found["attempts"], found["last_error"]) == ("dead", 2, "second")
    assert found["finished_at"] is not None and found["locked_by"] is None
    await by_retry(db)
    job = await claim_one(db)
    assert await jobs.succeed(job)
    found = await state(url)
    assert (found["status"], found["attempts"], found["last_error"]) == ("succeeded", 1, None)
    assert found["finished_at"] is not None


async def test_a_run_that_owes_a_rerun_ends_pending_afresh_only_by_its_own_claim(
    db: Database,
    url: str,
) -> None:
    await queue.enqueue(db, TYPE, KEY, max_attempts=3)
    jobs = JobQueue(db, "test-worker")
    first = await claim_one(db)
    assert await by_rerun(db) == 1  # news while it runs
    assert (await state(url))["rerun"] == 1
    await time_passes(url, 60)  # the lease lapses: reclaimed, claimed again
    assert await jobs.reclaim_expired() == 1
    second = await claim_one(db)
    assert (await state(url))["rerun"] == 0  # the new run reads the news anyway
    assert not await jobs.succeed(first)  # the superseded run writes nothing
    assert (await state(url))["status"] == "running"
    assert await by_rerun(db) == 1
    assert await jobs.succeed(second)
    assert await state(url) == CLEAN  # pending afresh, for one more run, due now
    third = await claim_one(db)
    assert await jobs.succeed(third)
    found = await state(url)
    assert (found["status"], found["attempts"], found["rerun"]) == ("succeeded", 1, 0)


async def test_no_run_starts_between_a_rerun_of_a_pending_job_and_its_commit(
    db: Database,
    url: str,
) -> None:
    """A pending job's rerun changes nothing but holds the row until the delivery commits: on
    PostgreSQL a claim skips it, on SQLite it waits for the one writer.  So the run that follows
    reads what the delivery stored."""
    await queue.enqueue(db, TYPE, KEY, max_attempts=3)
    jobs = JobQueue(db, "test-worker")
    async with db.transaction() as conn:
        assert await conn.execute("rerun_jobs", dedupe_keys=f'["{KEY}"]') == 1
        claim = asyncio.create_task(jobs.claim(1, lease_s=30))
        await asyncio.sleep(0.3)
        assert not claim.done() or claim.result() == []
    claimed = await claim
    if not claimed:
        claimed = await jobs.claim(1, lease_s=30)
    assert [job.attempts for job in claimed] == [1]
