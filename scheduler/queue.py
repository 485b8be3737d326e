"""The SQL-facing side of background jobs: enqueue, claim, finish, leases, and the operator's
views.  Every statement is a named query (``sql/queries/jobs.sql``, claiming in
``sql/<dialect>/queries/jobs.sql``); every time is passed in by the caller's clock.

A run is owned by the worker id in ``locked_by`` until ``locked_until``.  Finishing or renewing
checks that ownership, so the methods that end a run return whether this worker still owned it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import orjson

from sql import Connection, Database, Row

STATUSES = ("pending", "running", "succeeded", "dead")


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One claimed run of a background job, as a handler receives it."""

    id: int
    type: str
    dedupe_key: str
    workspace_id: str | None
    message_id: int | None
    payload: dict[str, Any]
    attempts: int  # including this run
    max_attempts: int

    @classmethod
    def from_row(cls, row: Row) -> Job:
        payload = orjson.loads(row["payload"] or "{}")  # jsonb and TEXT both arrive as text
        return cls(
            id=int(row["id"]),
            type=str(row["type"]),
            dedupe_key=str(row["dedupe_key"]),
            workspace_id=row["workspace_id"],
            message_id=None if row["message_id"] is None else int(row["message_id"]),
            payload=dict(payload),
            attempts=int(row["attempts"]),
            max_attempts=int(row["max_attempts"]),
        )


async def enqueue(
    db: Connection,
    job_type: str,
    dedupe_key: str,
    *,
    now: dt.datetime,
    max_attempts: int,
    payload: dict[str, Any] | None = None,
    workspace_id: str | None = None,
    message_id: int | None = None,
) -> int | None:
    """Enqueue a job (on a database or inside a transaction), or re-enqueue a dead one with the
    same key.  Returns the job id, or None when a pending, running or succeeded job already has
    that key (it is left alone)."""
    row = await db.fetch_one(
        "enqueue_job",
        type=job_type,
        dedupe_key=dedupe_key,
        workspace_id=workspace_id,
        message_id=message_id,
        payload=orjson.dumps(payload or {}).decode(),
        max_attempts=max_attempts,
        now=now,
    )
    return None if row is None else int(row["id"])


class JobQueue:
    """The background_jobs table as one worker sees it."""

    def __init__(self, db: Database, worker: str) -> None:
        self.db = db
        self.worker = worker

    async def claim(self, n: int, *, now: dt.datetime, lease_until: dt.datetime) -> list[Job]:
        """Take up to ``n`` due pending jobs, oldest first."""
        if n <= 0:
            return []
        rows = await self.db.fetch_all(
            "claim_jobs", worker=self.worker, now=now, lease_until=lease_until, n=n
        )
        return sorted((Job.from_row(r) for r in rows), key=lambda j: j.id)

    async def reclaim_expired(self, *, now: dt.datetime) -> int:
        """Runs whose lease expired (their worker died) go back to pending, or dead when that
        was their last attempt.  Returns how many."""
        return await self.db.execute("reclaim_expired_jobs", now=now)

    async def succeed(self, job: Job, *, now: dt.datetime) -> bool:
        return await self.db.execute("succeed_job", id=job.id, worker=self.worker, now=now) == 1

    async def retry_later(
        self, job: Job, *, error: str, now: dt.datetime, run_at: dt.datetime
    ) -> bool:
        changed = await self.db.execute(
            "retry_job_later", id=job.id, worker=self.worker, error=error, now=now, run_at=run_at
        )
        return changed == 1

    async def bury(self, job: Job, *, error: str, now: dt.datetime) -> bool:
        """Mark the job dead with its last error."""
        changed = await self.db.execute(
            "bury_job", id=job.id, worker=self.worker, error=error, now=now
        )
        return changed == 1

    async def renew(self, *, now: dt.datetime, lease_until: dt.datetime) -> set[int]:
        """Extend every lease this worker holds; return the ids it still owns."""
        rows = await self.db.fetch_all(
            "renew_leases", worker=self.worker, now=now, lease_until=lease_until
        )
        return {int(r["id"]) for r in rows}

    async def release(self, *, now: dt.datetime) -> int:
        """Put this worker's unfinished runs back to pending (shutdown)."""
        return await self.db.execute("release_jobs", worker=self.worker, now=now)


async def list_jobs(
    db: Database, *, status: str | None = None, job_type: str | None = None, limit: int = 100
) -> list[Row]:
    return await db.fetch_all("list_jobs", status=status, type=job_type, limit=limit)


async def job_counts(db: Database) -> dict[str, dict[str, int]]:
    """``{type: {status: n}}`` with every status present (zero when there is none)."""
    counts: dict[str, dict[str, int]] = {}
    for row in await db.fetch_all("job_counts"):
        per_type = counts.setdefault(str(row["type"]), dict.fromkeys(STATUSES, 0))
        per_type[str(row["status"])] = int(row["n"])
    return counts


async def retry_job(db: Database, job_id: int, *, now: dt.datetime) -> bool:
    """Operator retry of one job: dead → pending with fresh attempts, pending → due now.
    False when the job does not exist or is running or succeeded."""
    return await db.fetch_one("retry_job_now", id=job_id, now=now) is not None


async def retry_dead_jobs(db: Database, *, now: dt.datetime) -> int:
    return await db.execute("retry_dead_jobs", now=now)
