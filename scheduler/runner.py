"""The job runner: claim → run → finish, never more than ``JOB_CONCURRENCY`` runs at once.

``tick()`` claims at most as many due jobs as the semaphore has free slots and starts one task
per job; the poll's tick first turns runs whose lease expired (their worker died) back into
pending jobs, or dead ones if that was their last attempt.  When a run ends and its claim had
filled every free slot (so more jobs may be due), the runner claims again at once instead of
waiting for the next poll.

One claim, one run.  Every claim writes a fresh ``claim_token`` on the job's row (a fencing
token), and the run it starts renews, finishes and releases the job by id *and* token, so a run
whose claim was superseded writes nothing.  The lease task renews exactly the claims in flight
every ``JOB_LEASE_S / 3``, timing each lease from the moment its renewal was sent (the database
stamps a later ``now()``).  A claim missing from the renewal's answer was superseded: its run
is cancelled.  A claim the runner cannot renew (the database is away) is given up, and its run
cancelled, before its lease can lapse — so by the time the database is back and a poll reclaims
the job, this runner has stopped working on it.

A claim that returns a job this runner still has a run of (one that was cancelled but has not
yet ended: a handler stuck in a call that ignores cancellation) supersedes that run's claim:
the old run is cancelled, and the new one waits for it to end before its handler starts, so one
job never has two handlers at once.  Refusing the claim instead would put the job back to
pending while the old run may still be going, for another replica to start beside it.

A run succeeds when its handler returns.  It fails when the handler raises, when its time
budget passes (the handler is cancelled), or when no handler is registered for its type; a
failure is retried after ``min(cap, base * 2**(attempts-1)) * jitter`` (``now_plus`` on the
database) until ``max_attempts``, then the job is dead with ``last_error``.  A result that
cannot be written is retried with backoff while the lease is surely ours (at most one lease);
then the claim is given up, its lease lapses, and a poll here or on another replica recovers
the job.  ``stop()`` stops claiming, lets runs finish within a grace period, cancels the rest
and puts their claims back to pending.
"""

from __future__ import annotations

import asyncio
import dataclasses
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
# 5 s doubled 8 times passes the cap; the clamp only keeps 2.0 ** n finite for any attempt.
_MAX_DOUBLINGS = 32
FINISH_RETRY_FIRST_S = 0.05


def backoff_delay(attempts: int, rng: random.Random) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: exponential, capped,
    with jitter in [0.5, 1) so replicas that failed together do not retry together."""
    doublings = min(max(attempts - 1, 0), _MAX_DOUBLINGS)
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0**doublings) * rng.uniform(0.5, 1.0)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclasses.dataclass(eq=False, slots=True)
class _Run:
    """One claim and the task running it."""

    job: Job
    held_until: float  # time.monotonic() until which the lease is surely ours
    task: asyncio.Task[None] = dataclasses.field(init=False)
    renewing: bool = True  # False once the claim is given up: its lease is left to lapse
    finishing: bool = False  # writing its result: the finish keeps its own deadline


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
        self.lease_s = float(settings.job_lease_s)
        self.renew_every_s = max(self.lease_s / 3, 0.05)
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(self.concurrency)
        self._runs: dict[asyncio.Task[None], _Run] = {}
        self._tick_lock = asyncio.Lock()
        self._more_due = False
        self._refill: asyncio.Task[None] | None = None
        self._refill_again = False
        self._lease_task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> int:
        return len(self._runs)

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
            if reclaim and (reclaimed := await self.queue.reclaim_expired()):
                log.warning("reclaimed jobs whose lease expired", extra={"n": reclaimed})
            free = self.concurrency - len(self._runs)
            if free <= 0:
                self._more_due = True
                return 0
            sent = time.monotonic()
            jobs = await self.queue.claim(free, lease_s=self.lease_s)
            self._more_due = len(jobs) == free
            for job in jobs:
                self._start(job, held_until=sent + self.lease_s)
            self.runtime.metrics.jobs_running.set(len(self._runs))
            return len(jobs)

    def _start(self, job: Job, *, held_until: float) -> None:
        earlier = [run for run in self._runs.values() if run.job.id == job.id]
        for run in earlier:
            log.warning(
                "job claimed again while an earlier run of it is still ending; that run is "
                "cancelled and the new one waits for it",
                extra={"job_id": job.id, "job_type": job.type, "worker": self.worker},
            )
            run.renewing = False
            run.task.cancel()
        run = _Run(job, held_until)
        run.task = asyncio.create_task(
            self._run(run, [r.task for r in earlier]), name=f"job:{job.id}"
        )
        self._runs[run.task] = run
        self.runtime.metrics.jobs_claimed.labels(job.type).inc()
        run.task.add_done_callback(self._done)

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
                if self._runs:
                    await asyncio.wait(set(self._runs), return_when=asyncio.FIRST_COMPLETED)
                elif started == 0:
                    return

    async def stop(self, grace_s: float) -> None:
        """Stop claiming, give runs in flight ``grace_s`` to finish, cancel the rest and put
        their claims back to pending.  Returns once every task this runner started has ended."""
        self._stopping = True
        async with self._tick_lock:  # a claim in progress completes and its jobs start
            pass
        if self._refill is not None:
            await asyncio.gather(self._refill, return_exceptions=True)
        cut_short: list[Job] = []
        if self._runs:
            _, late = await asyncio.wait(set(self._runs), timeout=grace_s)
            cut_short = [self._runs[t].job for t in late if self._runs[t].renewing]
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.queue.drain()
        if self._lease_task is not None:
            self._lease_task.cancel()
            await asyncio.gather(self._lease_task, return_exceptions=True)
            self._lease_task = None
        if not cut_short:
            return
        try:
            released = await self.queue.release(cut_short)
        except DatabaseError as exc:
            log.error(
                "could not release unfinished jobs; their leases lapse and a poll recovers them",
                extra={"worker": self.worker, "n": len(cut_short), "error": str(exc)},
            )
            return
        log.warning("released unfinished jobs", extra={"worker": self.worker, "n": released})

    def nudge(self) -> None:
        """A job just became due (a webhook here, or a wake-up from scheduler/wakeups.py): claim
        it now if a slot is free rather than at the next poll."""
        if len(self._runs) >= self.concurrency:
            self._more_due = True  # the next slot to free claims it
            return
        self._refill_soon()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._runs.pop(task, None)
        self.runtime.metrics.jobs_running.set(len(self._runs))
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

    async def _run(self, run: _Run, earlier: list[asyncio.Task[None]]) -> None:
        if earlier:
            await asyncio.wait(earlier)  # never two handlers of one job at once
        job = run.job
        spec = self.registry.get(job.type)
        timeout_s = self.runtime.settings.job_timeout_s
        if spec is not None and spec.timeout_s is not None:
            timeout_s = spec.timeout_s
        async with self._slots:
            started = time.monotonic()
            error: str | None = None
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
            # CancelledError (shutdown, a superseded or lapsing claim) writes nothing: the row is
            # left to release() or to the claim that superseded this one.
            run.finishing = True
            await self._record(run, error, time.monotonic() - started)

    async def _record(self, run: _Run, error: str | None, duration_s: float) -> None:
        """Write the run's end, retrying a failed write with backoff while the lease is surely
        ours and for at most one lease; then give the claim up, so the lease lapses and a poll
        (here or on another replica) recovers the job: at least once, never stuck ``running``."""
        job = run.job
        delay_s = FINISH_RETRY_FIRST_S
        give_up_at = time.monotonic() + self.lease_s
        while True:
            try:
                await self._finish(job, error, duration_s)
                return
            except DatabaseError as exc:
                if time.monotonic() + delay_s >= min(run.held_until, give_up_at):
                    log.error(
                        "could not record a job's result; its lease is left to lapse",
                        extra={"job_id": job.id, "job_type": job.type, "error": str(exc)},
                    )
                    return
                log.warning(
                    "could not record a job's result; retrying",
                    extra={"job_id": job.id, "job_type": job.type, "error": str(exc)},
                )
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, self.renew_every_s)

    async def _finish(self, job: Job, error: str | None, duration_s: float) -> None:
        metrics = self.runtime.metrics
        if error is None:
            owned = await self.queue.succeed(job)
            outcome = "succeeded"
        elif job.attempts >= job.max_attempts:
            owned = await self.queue.bury(job, error=error)
            outcome = "dead"
        else:
            delay_s = backoff_delay(job.attempts, self._rng)
            owned = await self.queue.retry_later(job, error=error, delay_s=delay_s)
            outcome = "failed"
        metrics.job_duration.labels(job.type, outcome).observe(duration_s)
        if not owned:
            log.warning(
                "job finished after its claim was superseded; result dropped",
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
        """Every third of a lease, renew the claims in flight, until cancelled by ``stop``.  A
        renewal may take as long as every lease it extends is surely held, less half a renewal
        interval for a cancellation to land; a claim whose lease could lapse before the next
        renewal is given up."""
        margin_s = self.renew_every_s / 2
        due = time.monotonic()
        while True:
            due = max(due + self.renew_every_s, time.monotonic())  # a steady beat
            await asyncio.sleep(due - time.monotonic())
            runs = [run for run in self._runs.values() if run.renewing]
            if not runs:
                continue
            sent = time.monotonic()
            patience_s = min(run.held_until for run in runs) - sent - margin_s
            held: set[tuple[int, int]] | None = None
            try:
                async with asyncio.timeout(max(patience_s, 0.0)):
                    held = await self.queue.renew([run.job for run in runs], lease_s=self.lease_s)
            except (DatabaseError, TimeoutError) as exc:
                log.warning(
                    "lease renewal failed", extra={"worker": self.worker, "error": str(exc)}
                )
            for run in runs:
                if held is not None and run.job.claim in held:
                    run.held_until = sent + self.lease_s
                elif held is not None:
                    self._give_up(run, "job's claim was superseded; run cancelled")
                elif time.monotonic() + self.renew_every_s + margin_s >= run.held_until:
                    self._give_up(run, "job's lease could not be renewed before it lapses")

    def _give_up(self, run: _Run, message: str) -> None:
        """Stop renewing a claim and cancel its run (unless it is writing its result, which
        keeps its own deadline)."""
        if run.finishing:
            return
        run.renewing = False
        log.warning(message, extra={"job_id": run.job.id, "worker": self.worker})
        run.task.cancel()
