"""The quarantine's periodic retention, run by the scheduler (``serve`` or ``worker``), never by
a request: replayed and discarded rows older than ``QUARANTINE_RETENTION_DAYS`` are deleted;
pending rows are kept until someone acts.  (Its Slack alerts go out with the others, from
``scheduler.alerts``.)
"""

from __future__ import annotations

from gateway.quarantine import purge_quarantine
from gateway.runtime import Runtime
from scheduler.crons import ScheduledJob

PURGE_JOB_ID = "quarantine.purge"
PURGE_INTERVAL_S = 3600


def quarantine_jobs(runtime: Runtime) -> list[ScheduledJob]:
    """The retention purge: hourly, and once at start (a process may not live an hour)."""

    async def purge() -> None:
        await purge_quarantine(
            runtime.db, runtime.clock(), runtime.settings.quarantine_retention_days
        )

    return [ScheduledJob(PURGE_JOB_ID, PURGE_INTERVAL_S, purge, at_start=True)]
