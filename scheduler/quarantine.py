"""The quarantine's periodic retention, run by the scheduler (``serve`` or ``worker``), never by
a request: replayed and discarded rows older than ``QUARANTINE_RETENTION_DAYS`` are deleted;
pending rows are kept until someone acts.  (Its Slack alerts go out with the others, from
``scheduler.alerts``.)
"""

from __future__ import annotations

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from gateway.quarantine import purge_quarantine
from gateway.runtime import Runtime

PURGE_JOB_ID = "quarantine.purge"
PURGE_INTERVAL_S = 3600


def add_quarantine_jobs(scheduler: AsyncIOScheduler, runtime: Runtime) -> None:
    """Schedule the retention purge: hourly, and once at start (a process may not live an hour)."""

    async def purge() -> None:
        await purge_quarantine(
            runtime.db, runtime.clock(), runtime.settings.quarantine_retention_days
        )

    scheduler.add_job(
        purge,
        "interval",
        seconds=PURGE_INTERVAL_S,
        id=PURGE_JOB_ID,
        max_instances=1,
        coalesce=True,
        next_run_time=runtime.clock(),
    )
