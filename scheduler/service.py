"""APScheduler wiring: the poll tick, the quarantine purge and the crons (with the alert
sender) as interval jobs, and a graceful stop.

``hookgate serve`` runs this inside the Starlette lifespan; ``hookgate worker`` runs it alone.
Every interval job runs with ``JOB_DEFAULTS``: one instance at a time, missed runs coalesced
into one, and no misfire grace limit (APScheduler's default of 1 s silently skips a tick whenever
the event loop was busy for a second when it fell due; a 15-minute cron then waits another 15).
Wake-ups (``scheduler/wakeups.py``) start and stop with it: jobs made due by other
processes are claimed at once; the poll is the safety net.

APScheduler 3.11's ``shutdown(wait=True)`` does not wait for running coroutine jobs: they are
cancelled on the next loop turn, mid-post, and the cancellation is swallowed.  So this service
keeps its own set of the scheduler jobs in flight, and stopping is: pause (no new runs), give
the job runner's runs and every scheduler job in flight ``HOOKGATE_SHUTDOWN_GRACE_S`` together
to finish, cancel what is left (each hands back what it held: the runner puts its claims back
to pending, a cron its lease) and wait for it to end, then ``shutdown(wait=False)``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from gateway.runtime import Runtime, no_wakeup
from scheduler.crons import CronService, ScheduledJob
from scheduler.quarantine import quarantine_jobs
from scheduler.queue_samples import queue_sample_jobs
from scheduler.runner import JobRunner
from scheduler.wakeups import JobWakeups

log = logging.getLogger("hookgate.scheduler")

POLL_JOB_ID = "jobs.poll"
JOB_DEFAULTS = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}


class _SkippedTickFilter(logging.Filter):
    """A tick that finds the previous one still running is skipped by design (max_instances=1,
    coalesce): APScheduler logs each skip as a warning, which would flood the logs whenever a
    claim takes longer than the poll interval."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances reached" not in record.getMessage()


class _StopCancelledFilter(logging.Filter):
    """A stop cancels the scheduler jobs still running: those ``_drain`` cuts short past the
    grace period (its warning names them), and one that began between the drain's look at what
    runs and ``shutdown(wait=False)`` (a start aborted at once: uvicorn failed to bind).  The
    executor logs each cancellation as an error with a ``CancelledError`` traceback.  Nothing
    but a stop cancels these jobs, so that traceback says nothing the stop's own lines do not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


_apscheduler_log = logging.getLogger("hookgate.scheduler.apscheduler")
_apscheduler_log.addFilter(_SkippedTickFilter())
# The executor logs every run of every interval job at INFO ("Running job …", "… executed
# successfully"): several lines a second from the poll alone.  Its warnings and errors stay.
_executor_log = logging.getLogger("apscheduler.executors.default")
_executor_log.setLevel(logging.WARNING)
_executor_log.addFilter(_StopCancelledFilter())


class SchedulerService:
    def __init__(
        self, runtime: Runtime, runner: JobRunner | None = None, crons: CronService | None = None
    ) -> None:
        self.runtime = runtime
        self.runner = runner or JobRunner(runtime)
        self.crons = crons
        self.wakeups = JobWakeups(runtime, self.runner.nudge)
        self.scheduler = AsyncIOScheduler(
            timezone=dt.UTC, logger=_apscheduler_log, job_defaults=JOB_DEFAULTS
        )
        self._in_flight: dict[asyncio.Task[Any], str] = {}  # scheduler job runs → job id

    async def start(self) -> None:
        settings = self.runtime.settings
        self.runner.start()
        poll_s = settings.job_poll_interval_ms / 1000
        jobs = [ScheduledJob(POLL_JOB_ID, poll_s, self.runner.poll, at_start=True)]
        jobs += quarantine_jobs(self.runtime)
        jobs += queue_sample_jobs(self.runtime)
        jobs += self.crons.scheduled_jobs() if self.crons is not None else []
        for job in jobs:
            self._add(job)
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

    def _add(self, job: ScheduledJob) -> None:
        """Schedule ``job``, each run of it kept in ``_in_flight`` until it ends."""

        async def tracked() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._in_flight[task] = job.id
            try:
                await job.func()
            finally:
                del self._in_flight[task]

        first = {"next_run_time": dt.datetime.now(dt.UTC)} if job.at_start else {}
        self.scheduler.add_job(tracked, "interval", seconds=job.seconds, id=job.id, **first)

    async def stop(self) -> None:
        grace_s = self.runtime.settings.shutdown_grace_s
        self.runtime.job_due = no_wakeup
        await self.wakeups.stop()
        self.scheduler.pause()
        try:
            await asyncio.gather(self.runner.stop(grace_s), self._drain(grace_s))
        finally:
            self.scheduler.shutdown(wait=False)
        log.info("scheduler stopped", extra={"worker": self.runner.worker})

    async def _drain(self, grace_s: float) -> None:
        """Give the scheduler jobs in flight (and manual cron runs) ``grace_s`` to finish; cancel
        the rest, once each, and wait until they have ended."""
        tasks = set(self._in_flight)
        if self.crons is not None:
            tasks |= self.crons.runs_in_flight()
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=grace_s)
        if not late:
            return
        log.warning(
            "scheduler jobs cut short by shutdown",
            extra={"jobs": sorted(self._in_flight.get(t, t.get_name()) for t in late)},
        )
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


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
