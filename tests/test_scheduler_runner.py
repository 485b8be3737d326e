"""The job runner in this process, on both backends: the concurrency bound, retries with
backoff, dead jobs, time budgets, leases and a graceful stop.  Times are the database's; tests
move them on with ``time_passes`` (tests/jobs_support.py)."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest

from clients.context import current_ai_source, remaining_budget
from gateway.runtime import Runtime
from scheduler import queue
from scheduler.handlers import HandlerRegistry, JobContext
from scheduler.queue import Job, JobQueue
from scheduler.runner import BACKOFF_BASE_S, BACKOFF_CAP_S, JobRunner, backoff_delay
from scheduler.service import SchedulerService
from sql import Database
from tests.conftest import make_settings, utc
from tests.jobs_support import add_jobs, job_row, make_runtime, time_passes


@pytest.fixture
def runtime(db: Database, database_url: str) -> Runtime:
    return make_runtime(db, make_settings(database_url, JOB_CONCURRENCY="5"))


async def test_never_more_than_job_concurrency_at_once(runtime: Runtime) -> None:
    registry = HandlerRegistry()
    running = peak = 0
    done: list[int] = []

    @registry.register("COUNTED")
    async def counted(ctx: JobContext, job: Job) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.002)
        running -= 1
        done.append(job.id)

    ids = await add_jobs(runtime.db, "COUNTED", 300)
    async with JobRunner(runtime, registry=registry) as runner:
        await runner.run_until_idle(timeout_s=60)
    assert 1 < peak <= runtime.settings.job_concurrency
    assert sorted(done) == ids
    counts = await queue.job_counts(runtime.db)
    assert counts["COUNTED"]["succeeded"] == 300
    finished = runtime.metrics.jobs_finished.labels("COUNTED", "succeeded")._value.get()
    assert finished == 300


async def test_failures_back_off_then_die(
    runtime: Runtime, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = HandlerRegistry()
    calls: list[int] = []

    @registry.register("FLAKY")
    async def flaky(ctx: JobContext, job: Job) -> None:
        calls.append(job.attempts)
        raise RuntimeError(f"boom {job.attempts}")

    (job_id,) = await add_jobs(runtime.db, "FLAKY", max_attempts=3)
    caplog.set_level(logging.ERROR, logger="hookgate.jobs")
    async with JobRunner(runtime, registry=registry, rng=random.Random(4)) as runner:
        for attempt in (1, 2):
            await runner.run_until_idle(timeout_s=10)
            row = await job_row(runtime.db, job_id)
            assert (row["status"], row["attempts"]) == ("pending", attempt)
            assert row["last_error"] == f"RuntimeError: boom {attempt}"
            # run_at and updated_at are written by one statement, both by the database's clock.
            delay = (utc(row["run_at"]) - utc(row["updated_at"])).total_seconds()
            full = BACKOFF_BASE_S * 2 ** (attempt - 1)
            assert full / 2 <= delay <= full
            await time_passes(database_url, delay - 1)  # not due yet: nothing runs
            await runner.run_until_idle(timeout_s=10)
            assert len(calls) == attempt
            await time_passes(database_url, 1)
        await runner.run_until_idle(timeout_s=10)
    row = await job_row(runtime.db, job_id)
    assert (row["status"], row["attempts"]) == ("dead", 3)
    assert row["last_error"] == "RuntimeError: boom 3"
    assert row["locked_by"] is None
    assert calls == [1, 2, 3]
    failures = [r for r in caplog.records if r.getMessage() == "job failed"]
    assert [(r.job_id, r.job_type, r.attempt, r.error) for r in failures] == [  # type: ignore[attr-defined]
        (job_id, "FLAKY", n, f"RuntimeError: boom {n}") for n in (1, 2, 3)
    ]


@pytest.mark.parametrize("attempts", [9, 1024, 1025, 10**6])
def test_backoff_stays_at_its_cap_however_many_attempts_failed(attempts: int) -> None:
    rng = random.Random(attempts)
    delays = [backoff_delay(attempts, rng) for _ in range(100)]
    assert all(BACKOFF_CAP_S / 2 <= delay < BACKOFF_CAP_S for delay in delays)


async def test_time_budget_cancels_the_handler_and_counts_as_a_failure(runtime: Runtime) -> None:
    registry = HandlerRegistry()
    seen: dict[str, Any] = {}

    @registry.register("SLOW", timeout_s=0.3)
    async def slow(ctx: JobContext, job: Job) -> None:
        seen["source"] = current_ai_source()
        seen["budget"] = remaining_budget()
        await asyncio.sleep(30)

    (job_id,) = await add_jobs(runtime.db, "SLOW", max_attempts=1)
    async with JobRunner(runtime, registry=registry) as runner:
        await runner.run_until_idle(timeout_s=10)
    row = await job_row(runtime.db, job_id)
    assert (row["status"], row["last_error"]) == ("dead", "timed out after 0.3 s")
    assert seen["source"] == "background_job:SLOW"
    assert 0 < seen["budget"] <= 0.3


async def test_unknown_job_type_fails_cleanly_until_dead(
    runtime: Runtime, database_url: str
) -> None:
    (job_id,) = await add_jobs(runtime.db, "NO_SUCH_TYPE", max_attempts=2)
    async with JobRunner(runtime, registry=HandlerRegistry()) as runner:
        await runner.run_until_idle(timeout_s=10)
        await time_passes(database_url, 3600)
        await runner.run_until_idle(timeout_s=10)
    row = await job_row(runtime.db, job_id)
    assert row["status"] == "dead"
    assert row["last_error"] == "no handler is registered for job type NO_SUCH_TYPE"


async def test_expired_lease_is_reclaimed_and_the_old_claim_cannot_finish(
    runtime: Runtime, database_url: str
) -> None:
    (job_id,) = await add_jobs(runtime.db, "LEASED")
    lease_s = runtime.settings.job_lease_s
    old, new = JobQueue(runtime.db, "worker-old"), JobQueue(runtime.db, "worker-new")
    (claimed,) = await old.claim(5, lease_s=lease_s)
    assert await new.claim(5, lease_s=lease_s) == []
    assert await old.renew([claimed], lease_s=lease_s) == {claimed.claim}

    await time_passes(database_url, lease_s + 1)  # the old worker stalled past its lease
    assert await new.reclaim_expired() == 1
    assert await old.renew([claimed], lease_s=lease_s) == set()
    (reclaimed,) = await new.claim(5, lease_s=lease_s)
    assert (reclaimed.id, reclaimed.attempts) == (job_id, 2)
    assert reclaimed.claim_token == claimed.claim_token + 1
    assert not await old.succeed(claimed)
    assert not await old.bury(claimed, error="late")
    assert await old.release([claimed]) == 0
    assert await new.succeed(reclaimed)
    row = await job_row(runtime.db, job_id)
    assert (row["status"], row["attempts"], row["locked_by"]) == ("succeeded", 2, None)


async def test_worker_lost_on_the_last_attempt_makes_the_job_dead(
    runtime: Runtime, database_url: str
) -> None:
    (job_id,) = await add_jobs(runtime.db, "LEASED", max_attempts=1)
    lease_s = runtime.settings.job_lease_s
    await JobQueue(runtime.db, "worker-gone").claim(1, lease_s=lease_s)
    await time_passes(database_url, lease_s + 1)
    registry = HandlerRegistry()
    registry.register("LEASED")(_noop)
    async with JobRunner(runtime, registry=registry) as runner:
        await runner.run_until_idle(timeout_s=10)
    row = await job_row(runtime.db, job_id)
    assert row["status"] == "dead"
    assert row["last_error"] == "lease expired: worker worker-gone stopped during attempt 1"


async def _noop(ctx: JobContext, job: Job) -> None:
    return None


async def test_stop_lets_short_runs_finish_and_releases_the_rest(runtime: Runtime) -> None:
    registry = HandlerRegistry()
    started: set[str] = set()
    both = asyncio.Event()

    async def wait_then(seconds: float, job: Job) -> None:
        started.add(job.type)
        if len(started) == 2:
            both.set()
        await asyncio.sleep(seconds)

    registry.register("QUICK")(lambda ctx, job: wait_then(0.2, job))
    registry.register("STUCK")(lambda ctx, job: wait_then(60, job))
    (quick,) = await add_jobs(runtime.db, "QUICK")
    (stuck,) = await add_jobs(runtime.db, "STUCK")
    runner = JobRunner(runtime, registry=registry)
    runner.start()
    assert await runner.tick() == 2
    await asyncio.wait_for(both.wait(), 10)
    await runner.stop(grace_s=1.0)
    assert (await job_row(runtime.db, quick))["status"] == "succeeded"
    row = await job_row(runtime.db, stuck)
    assert (row["status"], row["attempts"], row["locked_by"]) == ("pending", 0, None)
    assert await runner.tick() == 0  # a stopped runner claims nothing
    assert (await job_row(runtime.db, stuck))["status"] == "pending"


async def test_a_freed_slot_starts_the_next_job_without_waiting_for_the_poll(
    db: Database, database_url: str
) -> None:
    settings = make_settings(database_url, JOB_CONCURRENCY="1", JOB_POLL_INTERVAL_MS="600000")
    runtime = make_runtime(db, settings)
    registry = HandlerRegistry()
    ran: list[int] = []
    all_ran = asyncio.Event()

    @registry.register("CHAINED")
    async def chained(ctx: JobContext, job: Job) -> None:
        ran.append(job.id)
        if len(ran) == 3:
            all_ran.set()

    ids = await add_jobs(db, "CHAINED", 3)
    service = SchedulerService(runtime, JobRunner(runtime, registry=registry))
    await service.start()  # one tick now, the next one in ten minutes
    try:
        await asyncio.wait_for(all_ran.wait(), 15)
    finally:
        await service.stop()
    assert ran == ids
    assert (await queue.job_counts(db))["CHAINED"]["succeeded"] == 3
