"""The job queue's depth over time, for the console's chart: once a minute each replica's
scheduler (``serve`` or ``worker``) writes this minute's pending and running counts by job type
(``sample_queue_depth``, on the database's clock; the first replica to sample a minute wins,
the others change nothing) and drops samples older than ``KEEP_S``.  Nothing here runs on a
request or inside the job runner's loop."""

from __future__ import annotations

import logging

from gateway.runtime import Runtime
from scheduler.crons import ScheduledJob
from sql import Database, DatabaseError

log = logging.getLogger("hookgate.scheduler")

SAMPLE_JOB_ID = "jobs.sample_queue_depth"
SAMPLE_INTERVAL_S = 60
KEEP_S = 8 * 24 * 3600  # the console's longest range is 7 days


async def sample_queue_depth(db: Database) -> None:
    """Record this minute's queue depth (if no replica has) and forget old samples."""
    await db.execute("sample_queue_depth")
    await db.execute("purge_queue_samples", keep_s=KEEP_S)


def queue_sample_jobs(runtime: Runtime) -> list[ScheduledJob]:
    """Sample every minute, and once at start."""

    async def sample() -> None:
        try:
            await sample_queue_depth(runtime.db)
        except DatabaseError as exc:
            log.warning("queue depth not sampled", extra={"error": str(exc)})

    return [ScheduledJob(SAMPLE_JOB_ID, SAMPLE_INTERVAL_S, sample, at_start=True)]
