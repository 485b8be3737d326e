"""APScheduler wiring: the poll tick as an interval job, and a graceful stop.

``hookgate serve`` runs this inside the Starlette lifespan; ``hookgate worker`` runs it alone.
Crons add their own jobs to ``SchedulerService.scheduler``.  Wake-ups (``scheduler/wakeups.py``)
start and stop with it: jobs made due by other processes are claimed at once, the poll is the
safety net.

APScheduler 3.11's ``shutdown(wait=True)`` does not wait for running coroutine jobs (they are
cancelled on the next loop turn), so stopping is: pause (no new ticks), let the runner drain
its runs within the grace period and release the rest, then ``shutdown(wait=False)``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from gateway.runtime import Runtime, no_wakeup
from scheduler.crons import CronService
from scheduler.quarantine import add_quarantine_jobs
from scheduler.runner import JobRunner
from scheduler.wakeups import JobWakeups

log = logging.getLogger("hookgate.scheduler")

POLL_JOB_ID = "jobs.poll"


class _SkippedTickFilter(logging.Filter):
    """A tick that finds the previous one still running is skipped by design (max_instances=1,
    coalesce): APScheduler logs each skip as a warning, which would flood the logs whenever a
    claim takes longer than the poll interval."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


_apscheduler_log = logging.getLogger("hookgate.scheduler.apscheduler")
_apscheduler_log.addFilter(_SkippedTickFilter())
# The executor logs every run of every interval job at INFO ("Running job …", "… executed
# successfully"): several lines a second from the poll alone.  Its warnings and errors stay.
logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)


class SchedulerService:
    def __init__(
        self, runtime: Runtime, runner: JobRunner | None = None, crons: CronService | None = None
    ) -> None:
        self.runtime = runtime
        self.runner = runner or JobRunner(runtime)
        self.crons = crons
        self.wakeups = JobWakeups(runtime, self.runner.nudge)
        self.scheduler = AsyncIOScheduler(timezone=dt.UTC, logger=_apscheduler_log)

    async def start(self) -> None:
        settings = self.runtime.settings
        self.runner.start()
        self.scheduler.add_job(
            self.runner.poll,
            "interval",
            seconds=settings.job_poll_interval_ms / 1000,
            id=POLL_JOB_ID,
            max_instances=1,
            coalesce=True,
            next_run_time=dt.datetime.now(dt.UTC),
        )
        add_quarantine_jobs(self.scheduler, self.runtime)
        for job in self.crons.scheduled_jobs() if self.crons is not None else ():
            self.scheduler.add_job(
                job.func, "interval", seconds=job.seconds, id=job.id, max_instances=1, coalesce=True
            )
        self.scheduler.start()
        self.runtime.job_due = self.runner.nudge
        self.wakeups.start()
        log.info(
            "scheduler started",
            extra={
                "worker": self.runner.worker,
                "concurrency": settings.job_concurrency,
                "poll_interval_ms": settings.job_poll_interval_ms,
                "job_types": self.runner.registry.types(),
            },
        )

    async def stop(self) -> None:
        grace_s = self.runtime.settings.shutdown_grace_s
        self.runtime.job_due = no_wakeup
        await self.wakeups.stop()
        self.scheduler.pause()
        try:
            if self.crons is not None:
                await asyncio.gather(self.runner.stop(grace_s), self.crons.stop(grace_s))
            else:
                await self.runner.stop(grace_s)
        finally:
            self.scheduler.shutdown(wait=False)
        log.info("scheduler stopped", extra={"worker": self.runner.worker})


@asynccontextmanager
async def running_scheduler(
    runtime: Runtime, crons: CronService | None = None
) -> AsyncIterator[SchedulerService | None]:
    """Run the scheduler for the block (unless ``HOOKGATE_SCHEDULER=0``), with ``crons`` on
    their schedules, stopping it gracefully at the end, before the caller closes the database."""
    if not runtime.settings.scheduler_enabled:
        yield None
        return
    service = SchedulerService(runtime, crons=crons)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def run_worker(runtime: Runtime) -> None:
    """``hookgate worker``: the scheduler without HTTP, until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        service = SchedulerService(runtime, crons=CronService(runtime))
        await service.start()
        try:
            await stop.wait()
            log.info("worker stopping", extra={"worker": service.runner.worker})
        finally:
            await service.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
