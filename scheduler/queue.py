"""The SQL-facing side of background jobs: enqueue, claim, finish, leases, and the operator's
views.  Every statement is a named query (``sql/queries/jobs.sql``; claiming, renewing and
releasing in ``sql/<dialect>/queries/jobs.sql``).  Every time is the database's: the statements
use ``now()`` and ``now_plus(seconds)``, and callers pass durations, never instants.

A run is owned by its claim: each claim increments the job's ``claim_token`` (a fencing token)
and every renew, finish and release checks the job's id and that token, so the methods that end
a run return whether its claim still held.  ``locked_by`` only says which worker holds it.

Successes are written together (``scheduler.coalesce``): the runs that succeed while one write
of successes is in flight are the next one's, one statement and one commit for all of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import orjson

from scheduler.coalesce import Coalescing
from sql import Connection, Database, Row, json_rows

STATUSES = ("pending", "running", "succeeded", "dead")
NO_ID_LIMIT = 2**63 - 1  # ``before_id`` that pages from the newest row

ClaimKey = tuple[int, int]  # (job id, claim token)


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
    claim_token: int  # this run's claim; the row carries it while the claim holds

    @property
    def claim(self) -> ClaimKey:
        return (self.id, self.claim_token)

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
            claim_token=int(row["claim_token"]),
        )


async def enqueue(
    db: Connection,
    job_type: str,
    dedupe_key: str,
    *,
    max_attempts: int,
    payload: dict[str, Any] | None = None,
    workspace_id: str | None = None,
    message_id: int | None = None,
) -> int | None:
    """Enqueue a job due now (on a database or inside a transaction), or re-enqueue a dead one
    with the same key.  Returns the job id, or None when a pending, running or succeeded job
    already has that key (it is left alone)."""
    row = await db.fetch_one(
        "enqueue_job",
        type=job_type,
        dedupe_key=dedupe_key,
        workspace_id=workspace_id,
        message_id=message_id,
        payload=orjson.dumps(payload or {}).decode(),
        max_attempts=max_attempts,
    )
    return None if row is None else int(row["id"])


def _claims_param(jobs: Iterable[Job]) -> str:
    """The ``:claims`` parameter of renew and release: ``[[id, claim_token], …]`` as JSON."""
    return json_rows([job.claim for job in jobs])


class JobQueue:
    """The background_jobs table as one worker sees it."""

    def __init__(self, db: Database, worker: str) -> None:
        self.db = db
        self.worker = worker
        self._successes = Coalescing(self._succeed_all)

    async def claim(self, n: int, *, lease_s: float) -> list[Job]:
        """Take up to ``n`` due pending jobs, oldest first, each leased for ``lease_s``."""
        if n <= 0:
            return []
        rows = await self.db.fetch_all("claim_jobs", worker=self.worker, lease_s=lease_s, n=n)
        return sorted((Job.from_row(r) for r in rows), key=lambda j: j.id)

    async def reclaim_expired(self) -> int:
        """Runs whose lease expired (their worker died) go back to pending, or dead when that
        was their last attempt.  Returns how many."""
        return await self.db.execute("reclaim_expired_jobs")

    async def succeed(self, job: Job) -> bool:
        """Mark the run succeeded (with the others succeeding meanwhile); False when its claim
        was superseded."""
        return await self._successes.get(job.claim) is not None

    async def _succeed_all(self, claims: list[ClaimKey]) -> dict[ClaimKey, bool]:
        rows = await self.db.fetch_all("succeed_jobs", claims=json_rows(claims))
        return {(int(r["id"]), int(r["claim_token"])): True for r in rows}

    async def drain(self) -> None:
        """Wait for the successes being written (before the database closes)."""
        await self._successes.drain()

    async def retry_later(self, job: Job, *, error: str, delay_s: float) -> bool:
        """Back to pending, due ``delay_s`` from now."""
        changed = await self.db.execute(
            "retry_job_later", id=job.id, claim_token=job.claim_token, error=error, delay_s=delay_s
        )
        return changed == 1

    async def bury(self, job: Job, *, error: str) -> bool:
        """Mark the job dead with its last error."""
        changed = await self.db.execute(
            "bury_job", id=job.id, claim_token=job.claim_token, error=error
        )
        return changed == 1

    async def renew(self, jobs: Iterable[Job], *, lease_s: float) -> set[ClaimKey]:
        """Extend the leases of exactly these claims; return the ones that still held."""
        rows = await self.db.fetch_all("renew_leases", claims=_claims_param(jobs), lease_s=lease_s)
        return {(int(r["id"]), int(r["claim_token"])) for r in rows}

    async def release(self, jobs: Iterable[Job]) -> int:
        """Put these claims' unfinished runs back to pending, the attempt not counted
        (shutdown)."""
        return await self.db.execute("release_jobs", claims=_claims_param(jobs))


async def list_jobs(
    db: Database,
    *,
    status: str | None = None,
    job_type: str | None = None,
    workspace_id: str | None = None,
    before_id: int = NO_ID_LIMIT,
    limit: int = 100,
) -> list[Row]:
    """Jobs newest first, each filter None for any; ``before_id`` pages back."""
    return await db.fetch_all(
        "list_jobs",
        status=status,
        type=job_type,
        workspace_id=workspace_id,
        before_id=before_id,
        limit=limit,
    )


async def job_counts(db: Database) -> dict[str, dict[str, int]]:
    """``{type: {status: n}}`` with every status present (zero when there is none)."""
    counts: dict[str, dict[str, int]] = {}
    for row in await db.fetch_all("job_counts"):
        per_type = counts.setdefault(str(row["type"]), dict.fromkeys(STATUSES, 0))
        per_type[str(row["status"])] = int(row["n"])
    return counts


async def retry_job(db: Database, job_id: int) -> bool:
    """Operator retry of one job: dead → pending with fresh attempts, pending → due now.
    False when the job does not exist or is running or succeeded."""
    return await db.fetch_one("retry_job_now", id=job_id) is not None


async def retry_dead_jobs(db: Database) -> int:
    return await db.execute("retry_dead_jobs")
