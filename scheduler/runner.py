"""The job runner: claim → run → finish, never more than ``JOB_CONCURRENCY`` runs at once.

``tick()`` claims at most as many due jobs as the semaphore has free slots and starts one task
per job; the poll's tick first turns runs whose lease expired (their worker died) back into
pending jobs, or dead ones if that was their last attempt.  When a run ends and its claim had
filled every free slot (so more jobs may be due), the runner claims again at once instead of
waiting for the next poll.  A lease task renews the leases of every run in flight every
``JOB_LEASE_S / 3`` seconds; a run whose lease was taken from it (this worker stalled past it)
is cancelled and never writes its result.

A run succeeds when its handler returns.  It fails when the handler raises, when its time
budget passes (the handler is cancelled), or when no handler is registered for its type; a
failure is retried after ``min(cap, base * 2**(attempts-1)) * jitter`` until ``max_attempts``,
then the job is dead with ``last_error``.  ``stop()`` stops claiming, lets runs finish within a
grace period, cancels the rest and puts them back to pending.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import os
import random
import socket
import time
import uuid
from types import TracebackType

from clients.context import ai_source, time_budget
from gateway.runtime import Runtime
from scheduler.handlers import REGISTRY, HandlerRegistry, JobContext, load_handler_modules
from scheduler.queue import Job, JobQueue
from sql import DatabaseError

log = logging.getLogger("hookgate.jobs")

BACKOFF_BASE_S = 5.0
BACKOFF_CAP_S = 900.0


def backoff_delay(attempts: int, rng: random.Random) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: exponential, capped,
    with jitter in [0.5, 1) so replicas that failed together do not retry together."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** (attempts - 1)) * rng.uniform(0.5, 1.0)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobRunner:
    def __init__(
        self,
        runtime: Runtime,
        *,
        registry: HandlerRegistry | None = None,
        worker: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        settings = runtime.settings
        if registry is None:
            load_handler_modules(settings.job_handler_modules)
            registry = REGISTRY
        self.runtime = runtime
        self.registry = registry
        self.worker = worker or new_worker_id()
        self.queue = JobQueue(runtime.db, self.worker)
        self.concurrency = settings.job_concurrency
        self.lease = dt.timedelta(seconds=settings.job_lease_s)
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(self.concurrency)
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._finishing: set[int] = set()
        self._tick_lock = asyncio.Lock()
        self._more_due = False
        self._refill: asyncio.Task[None] | None = None
        self._refill_again = False
        self._lease_task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> int:
        return len(self._in_flight)

    async def __aenter__(self) -> JobRunner:
        self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop(self.runtime.settings.shutdown_grace_s)

    def start(self) -> None:
        """Start renewing leases (claiming happens in ``tick``)."""
        if self._lease_task is None:
            self._lease_task = asyncio.create_task(self._renew_leases(), name="jobs.leases")

    async def tick(self, *, reclaim: bool = False) -> int:
        """Claim and start as many due jobs as there are free slots; return how many.  With
        ``reclaim``, first turn runs whose lease expired back into pending (or dead) jobs."""
        async with self._tick_lock:
            if self._stopping:
                return 0
            now = self.runtime.clock()
            if reclaim and (reclaimed := await self.queue.reclaim_expired(now=now)):
                log.warning("reclaimed jobs whose lease expired", extra={"n": reclaimed})
            free = self.concurrency - len(self._in_flight)
            if free <= 0:
                self._more_due = True
                return 0
            jobs = await self.queue.claim(free, now=now, lease_until=now + self.lease)
            self._more_due = len(jobs) == free
            for job in jobs:
                self.runtime.metrics.jobs_claimed.labels(job.type).inc()
                task = asyncio.create_task(self._run(job), name=f"job:{job.id}")
                self._in_flight[job.id] = task
                task.add_done_callback(functools.partial(self._done, job.id))
            self.runtime.metrics.jobs_running.set(len(self._in_flight))
            return len(jobs)

    async def poll(self) -> None:
        """The scheduler's interval job: a tick that logs a database outage instead of raising."""
        try:
            await self.tick(reclaim=True)
            await self.runtime.metrics.refresh_queue_depth(self.runtime.db)
        except DatabaseError as exc:
            log.warning("job poll failed", extra={"worker": self.worker, "error": str(exc)})

    async def run_until_idle(self, *, timeout_s: float) -> None:
        """Tick until nothing is due and nothing runs (for tests, benchmarks and drains).
        Jobs waiting out a backoff are not due.  Raises TimeoutError after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while True:
                started = await self.tick(reclaim=True)
                if self._in_flight:
                    await asyncio.wait(
                        set(self._in_flight.values()), return_when=asyncio.FIRST_COMPLETED
                    )
                elif started == 0:
                    return

    async def stop(self, grace_s: float) -> None:
        """Stop claiming, give runs in flight ``grace_s`` to finish, cancel the rest and put
        them back to pending."""
        self._stopping = True
        async with self._tick_lock:  # a claim in progress completes and its jobs start
            pass
        if self._refill is not None:
            await asyncio.gather(self._refill, return_exceptions=True)
        if self._in_flight:
            _, late = await asyncio.wait(set(self._in_flight.values()), timeout=grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._lease_task is not None:
            self._lease_task.cancel()
            await asyncio.gather(self._lease_task, return_exceptions=True)
            self._lease_task = None
        released = await self.queue.release(now=self.runtime.clock())
        if released:
            log.warning("released unfinished jobs", extra={"worker": self.worker, "n": released})

    def nudge(self) -> None:
        """A job just became due (a webhook here, or a wake-up from scheduler/wakeups.py): claim
        it now if a slot is free rather than at the next poll."""
        if len(self._in_flight) >= self.concurrency:
            self._more_due = True  # the next slot to free claims it
            return
        self._refill_soon()

    def _done(self, job_id: int, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(job_id, None)
        self._finishing.discard(job_id)
        self.runtime.metrics.jobs_running.set(len(self._in_flight))
        if self._more_due:
            self._refill_soon()

    def _refill_soon(self) -> None:
        """One claim outside the poll.  Coalesced: while a refill runs, more requests only make
        it claim once more when it ends, so a storm of deliveries or finishing jobs costs one
        claim at a time — never a pile of tasks queued on the tick lock."""
        if self._stopping:
            return
        if self._refill is not None:
            self._refill_again = True
            return
        self._refill = asyncio.create_task(self._refill_now(), name="jobs.refill")

    async def _refill_now(self) -> None:
        try:
            while True:
                self._refill_again = False
                try:
                    await self.tick()
                except DatabaseError as exc:
                    log.warning(
                        "job claim failed", extra={"worker": self.worker, "error": str(exc)}
                    )
                    return
                if not self._refill_again or self._stopping:
                    return
        finally:
            self._refill = None

    async def _run(self, job: Job) -> None:
        spec = self.registry.get(job.type)
        timeout_s = self.runtime.settings.job_timeout_s
        if spec is not None and spec.timeout_s is not None:
            timeout_s = spec.timeout_s
        started = time.monotonic()
        error: str | None = None
        async with self._slots:
            if spec is None:
                error = f"no handler is registered for job type {job.type}"
            else:
                ctx = JobContext(self.runtime, self.worker, started + timeout_s)
                budget = asyncio.timeout(timeout_s)
                try:
                    with ai_source(f"background_job:{job.type}"), time_budget(timeout_s):
                        async with budget:
                            await spec.handler(ctx, job)
                except Exception as exc:
                    if isinstance(exc, TimeoutError) and budget.expired():
                        error = f"timed out after {timeout_s:g} s"
                    else:
                        error = f"{type(exc).__name__}: {exc}"
            # CancelledError (shutdown, lost lease) leaves the row to release() or its new owner.
            self._finishing.add(job.id)
            try:
                await self._finish(job, error, time.monotonic() - started)
            except DatabaseError as exc:
                # The lease runs out and the job is claimed again: at least once, never lost.
                log.error(
                    "could not record a job's result",
                    extra={"job_id": job.id, "job_type": job.type, "error": str(exc)},
                )

    async def _finish(self, job: Job, error: str | None, duration_s: float) -> None:
        metrics = self.runtime.metrics
        now = self.runtime.clock()
        if error is None:
            owned = await self.queue.succeed(job, now=now)
            outcome = "succeeded"
        elif job.attempts >= job.max_attempts:
            owned = await self.queue.bury(job, error=error, now=now)
            outcome = "dead"
        else:
            run_at = now + dt.timedelta(seconds=backoff_delay(job.attempts, self._rng))
            owned = await self.queue.retry_later(job, error=error, now=now, run_at=run_at)
            outcome = "failed"
        metrics.job_duration.labels(job.type, outcome).observe(duration_s)
        if not owned:
            log.warning(
                "job finished after losing its lease; result dropped",
                extra={"job_id": job.id, "job_type": job.type, "worker": self.worker},
            )
            return
        metrics.jobs_finished.labels(job.type, outcome).inc()
        if error is not None:
            log.error(
                "job failed",
                extra={
                    "job_id": job.id,
                    "job_type": job.type,
                    "attempt": job.attempts,
                    "max_attempts": job.max_attempts,
                    "error": error,
                    "dead": outcome == "dead",
                },
            )

    async def _renew_leases(self) -> None:
        """Renew every lease in flight every third of a lease, until cancelled by ``stop``."""
        interval = max(self.lease.total_seconds() / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            if not self._in_flight:
                continue
            in_flight = set(self._in_flight)
            now = self.runtime.clock()
            try:
                owned = await self.queue.renew(now=now, lease_until=now + self.lease)
            except DatabaseError as exc:
                log.warning(
                    "lease renewal failed", extra={"worker": self.worker, "error": str(exc)}
                )
                continue
            for job_id in in_flight - owned - self._finishing:
                task = self._in_flight.get(job_id)
                if task is not None:
                    log.warning("job lost its lease; cancelled", extra={"job_id": job_id})
                    task.cancel()
