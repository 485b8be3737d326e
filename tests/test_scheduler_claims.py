"""One claim, one run: the fencing token, a job claimed again while an earlier run of it is still
going (after an outage longer than the lease, through a real TCP proxy cut), a result that cannot
be written, and replicas whose clocks are 30 s off.  Concurrency is counted inside the handlers,
never read from the database."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable
from urllib.parse import urlsplit

import pytest

from scheduler.handlers import HandlerRegistry, JobContext
from scheduler.queue import Job, JobQueue
from scheduler.runner import BACKOFF_BASE_S, JobRunner
from sql import Database, DatabaseError, connect, database_now
from tests.conftest import make_settings, rows, utc
from tests.jobs_support import add_jobs, execute, make_runtime, skewed, time_passes
from tests.tcp_proxy import TcpProxy

LEASE_S = 30.0


class Witness:
    """A handler that counts its runs in flight and, on its first attempt, is stuck in a slow call
    that does not give way to cancellation (a blocking library, a shielded section) until the test
    lets it return — and then fails, a result that must not be recorded if its claim was lost."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.attempts: list[int] = []
        self.cancellations = 0
        self.tasks: list[asyncio.Task[object]] = []
        self.first_in = asyncio.Event()
        self.first_cancelled = asyncio.Event()
        self.let_first_return = asyncio.Event()

    async def __call__(self, ctx: JobContext, job: Job) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.append(task)
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.attempts.append(job.attempts)
        try:
            if job.attempts == 1:
                self.first_in.set()
                await self._ignore_cancellation(self.let_first_return.wait())
                raise RuntimeError("the first run's late result")
        finally:
            self.running -= 1

    async def let_first_return_after_the_second_claim(self, runner: JobRunner) -> None:
        """The job is claimed again: leave a second handler room to start beside the first (it
        must not), then let the first return and run until idle."""
        await asyncio.sleep(0.3)
        assert self.attempts == [1]
        self.let_first_return.set()
        await runner.run_until_idle(timeout_s=20)

    async def _ignore_cancellation(self, call: Awaitable[object]) -> None:
        pending = asyncio.ensure_future(call)
        while not pending.done():
            try:
                await asyncio.shield(pending)
            except asyncio.CancelledError:
                self.cancellations += 1
                self.first_cancelled.set()


def witness_registry(witness: Witness) -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register("WITNESSED")(witness)
    return registry


async def claim_token(database_url: str, job_id: int) -> int:
    [row] = await rows(
        database_url, "SELECT claim_token FROM background_jobs WHERE id = $1", job_id
    )
    return int(row["claim_token"])


async def job_state(database_url: str, job_id: int) -> dict[str, object]:
    [row] = await rows(
        database_url,
        "SELECT status, attempts, claim_token, locked_by, last_error FROM background_jobs"
        " WHERE id = $1",
        job_id,
    )
    return row


async def test_a_claim_superseded_by_the_same_worker_writes_nothing(
    db: Database, database_url: str
) -> None:
    (job_id,) = await add_jobs(db, "OWNED")
    worker = JobQueue(db, "same-worker")
    (first,) = await worker.claim(1, lease_s=LEASE_S)
    await time_passes(database_url, LEASE_S + 1)  # an outage longer than the lease
    assert await worker.reclaim_expired() == 1
    (second,) = await worker.claim(1, lease_s=LEASE_S)  # the same worker claims it again
    assert (second.id, second.claim_token) == (job_id, first.claim_token + 1)

    assert await worker.renew([first, second], lease_s=LEASE_S) == {second.claim}
    assert not await worker.succeed(first)
    assert not await worker.retry_later(first, error="late", delay_s=60)
    assert not await worker.bury(first, error="late")
    assert await worker.release([first]) == 0
    state = await job_state(database_url, job_id)
    assert (state["status"], state["attempts"], state["claim_token"]) == ("running", 2, 2)
    assert await worker.succeed(second)
    assert (await job_state(database_url, job_id))["status"] == "succeeded"


async def test_runs_succeeding_together_are_written_together_each_fenced_by_its_claim(
    db: Database, database_url: str
) -> None:
    """Twelve runs succeed at once (their successes share statements, scheduler.coalesce): the
    eleven whose claims hold are written (the one owed a re-run goes back to pending), and the
    superseded one, in the same statement, writes nothing."""
    ids = await add_jobs(db, "TOGETHER", 12)
    worker = JobQueue(db, "w")
    claimed = await worker.claim(12, lease_s=LEASE_S)
    stale = claimed[0]
    await execute(
        database_url,
        "UPDATE background_jobs SET claim_token = claim_token + 1 WHERE id = $1",
        stale.id,
    )
    await execute(database_url, "UPDATE background_jobs SET rerun = true WHERE id = $1", ids[5])
    owned = await asyncio.gather(*(worker.succeed(job) for job in claimed))
    assert owned == [False] + [True] * 11
    states = {
        r["id"]: r["status"]
        for r in await rows(database_url, "SELECT id, status FROM background_jobs")
    }
    assert states == {
        ids[0]: "running",
        ids[5]: "pending",
        **{i: "succeeded" for i in ids[1:] if i != ids[5]},
    }


async def test_a_job_claimed_again_while_its_run_is_still_going_never_has_two_handlers(
    db: Database, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    witness = Witness()
    runtime = make_runtime(db, make_settings(database_url, JOB_LEASE_S=str(int(LEASE_S))))
    (job_id,) = await add_jobs(db, "WITNESSED")
    caplog.set_level(logging.WARNING, logger="hookgate.jobs")
    runner = JobRunner(runtime, registry=witness_registry(witness))
    runner.start()
    try:
        assert await runner.tick() == 1
        await asyncio.wait_for(witness.first_in.wait(), 10)
        await time_passes(database_url, LEASE_S + 1)  # its lease lapsed while it ran
        assert await runner.tick(reclaim=True) == 1  # reclaimed and claimed again, right here
        assert await claim_token(database_url, job_id) == 2
        await asyncio.wait_for(witness.first_cancelled.wait(), 10)
        await witness.let_first_return_after_the_second_claim(runner)
    finally:
        witness.let_first_return.set()  # a failed assertion must not leave it stuck
        await runner.stop(grace_s=1)
    assert witness.peak == 1 and witness.attempts == [1, 2]
    state = await job_state(database_url, job_id)
    assert (state["status"], state["attempts"], state["last_error"]) == ("succeeded", 2, None)
    assert runtime.metrics.jobs_finished.labels("WITNESSED", "failed")._value.get() == 0
    assert "job finished after its claim was superseded; result dropped" in caplog.messages
    assert all(task.done() for task in witness.tasks) and runner.running == 0


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[TcpProxy]:
    target = urlsplit(postgres_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def test_an_outage_longer_than_the_lease_never_runs_one_job_twice_at_once(
    postgres_url: str, proxy: TcpProxy
) -> None:
    witness = Witness()
    db = await connect(proxy.url(postgres_url), pool_size=4, timeout_s=1)
    runtime = make_runtime(db, make_settings(postgres_url, JOB_LEASE_S="1"))
    (job_id,) = await add_jobs(db, "WITNESSED")
    runner = JobRunner(runtime, registry=witness_registry(witness))
    runner.start()
    try:
        assert await runner.tick() == 1
        await asyncio.wait_for(witness.first_in.wait(), 10)
        await proxy.cut()
        # Renewals fail; the run is cancelled before its lease can lapse (its handler ignores it).
        await asyncio.wait_for(witness.first_cancelled.wait(), 10)
        await asyncio.sleep(2.0)  # the outage outlasts the 1 s lease by far
        await proxy.restore()
        async with asyncio.timeout(20):  # a poll reclaims the job and this runner claims it again
            while await claim_token(postgres_url, job_id) < 2:
                try:
                    await runner.tick(reclaim=True)
                except DatabaseError:
                    await asyncio.sleep(0.1)  # the pool is still reconnecting
        await witness.let_first_return_after_the_second_claim(runner)
    finally:
        witness.let_first_return.set()  # a failed assertion must not leave it stuck
        await runner.stop(grace_s=1)
        await db.close()
    assert witness.peak == 1 and witness.attempts == [1, 2]
    state = await job_state(postgres_url, job_id)
    assert (state["attempts"], state["claim_token"], state["last_error"]) == (2, 2, None)
    assert all(task.done() for task in witness.tasks) and runner.running == 0


REFUSE_FIRST_SUCCESS = {
    "postgres": (
        """CREATE FUNCTION refuse_first_success() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.type = 'POISONED' AND NEW.status = 'succeeded' AND NEW.attempts = 1 THEN
                RAISE EXCEPTION 'could not extend file: No space left on device';
            END IF;
            RETURN NEW;
        END $$""",
        "CREATE TRIGGER refuse_first_success BEFORE UPDATE ON background_jobs"
        " FOR EACH ROW EXECUTE FUNCTION refuse_first_success()",
    ),
    "sqlite": (
        """CREATE TRIGGER refuse_first_success BEFORE UPDATE OF status ON background_jobs
        WHEN NEW.type = 'POISONED' AND NEW.status = 'succeeded' AND NEW.attempts = 1
        BEGIN SELECT RAISE(ABORT, 'disk I/O error: no space left on device'); END""",
    ),
}


@pytest.fixture
async def refused_first_success(db: Database, database_url: str) -> AsyncIterator[None]:
    """The database refuses to record the first success of a POISONED job (a real error from a
    trigger, as a full disk or a broken constraint would raise)."""
    for statement in REFUSE_FIRST_SUCCESS[db.dialect]:
        await execute(database_url, statement)
    try:
        yield
    finally:
        if db.dialect == "postgres":  # the session's database outlives the test (SQLite's not)
            await execute(database_url, "DROP TRIGGER refuse_first_success ON background_jobs")
            await execute(database_url, "DROP FUNCTION refuse_first_success()")


async def test_a_job_whose_result_cannot_be_written_is_recovered_while_other_work_runs(
    db: Database,
    database_url: str,
    refused_first_success: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    busy_release = asyncio.Event()
    registry = HandlerRegistry()

    @registry.register("BUSY")
    async def busy(ctx: JobContext, job: Job) -> None:
        await busy_release.wait()

    @registry.register("POISONED")
    async def poisoned(ctx: JobContext, job: Job) -> None:
        return None

    runtime = make_runtime(db, make_settings(database_url, JOB_LEASE_S="1"))
    (busy_id,) = await add_jobs(db, "BUSY")
    (poisoned_id,) = await add_jobs(db, "POISONED")
    caplog.set_level(logging.WARNING, logger="hookgate.jobs")
    runner = JobRunner(runtime, registry=registry)
    runner.start()
    try:
        assert await runner.tick() == 2
        async with asyncio.timeout(20):  # polls, as the scheduler's would, until it is recovered
            while (await job_state(database_url, poisoned_id))["status"] != "succeeded":
                await asyncio.sleep(0.2)
                await runner.tick(reclaim=True)
        busy_state = await job_state(database_url, busy_id)
        assert (busy_state["status"], busy_state["claim_token"]) == ("running", 1)  # kept alive
    finally:
        busy_release.set()
        await runner.stop(grace_s=5)
    state = await job_state(database_url, poisoned_id)
    assert (state["attempts"], state["claim_token"]) == (2, 2)
    assert "could not record a job's result; retrying" in caplog.messages
    assert "could not record a job's result; its lease is left to lapse" in caplog.messages
    assert (await job_state(database_url, busy_id))["status"] == "succeeded"


@pytest.mark.parametrize("holder_skew_s", [-30, 30])
async def test_a_replica_whose_clock_is_off_reclaims_no_live_job(
    db: Database, database_url: str, holder_skew_s: int
) -> None:
    settings = make_settings(database_url, JOB_LEASE_S="10")
    witness = Witness()
    holder = JobRunner(
        make_runtime(db, settings, skewed(holder_skew_s)),
        registry=witness_registry(witness),
        worker="holder",
    )
    other_ran: list[int] = []
    registry = HandlerRegistry()

    @registry.register("WITNESSED")
    async def elsewhere(ctx: JobContext, job: Job) -> None:
        other_ran.append(job.id)

    other = JobRunner(
        make_runtime(db, settings, skewed(-holder_skew_s)), registry=registry, worker="other"
    )
    (job_id,) = await add_jobs(db, "WITNESSED")
    holder.start()
    other.start()
    try:
        assert await holder.tick() == 1
        await asyncio.wait_for(witness.first_in.wait(), 10)
        for _ in range(3):
            assert await other.tick(reclaim=True) == 0
        state = await job_state(database_url, job_id)
        assert (state["status"], state["locked_by"], state["claim_token"]) == (
            "running",
            "holder",
            1,
        )
    finally:
        witness.let_first_return.set()
        await holder.stop(grace_s=5)
        await other.stop(grace_s=5)
    assert other_ran == []


async def test_backoff_is_counted_on_the_database_clock(db: Database, database_url: str) -> None:
    registry = HandlerRegistry()

    @registry.register("FLAKY")
    async def flaky(ctx: JobContext, job: Job) -> None:
        raise RuntimeError("boom")

    runtime = make_runtime(db, make_settings(database_url), skewed(30))
    (job_id,) = await add_jobs(db, "FLAKY")
    async with JobRunner(runtime, registry=registry, rng=random.Random(1)) as runner:
        await runner.run_until_idle(timeout_s=10)
    now = await database_now(db)
    [row] = await rows(database_url, "SELECT run_at FROM background_jobs WHERE id = $1", job_id)
    delay_s = (utc(row["run_at"]) - now).total_seconds()
    assert BACKOFF_BASE_S / 2 - 5 <= delay_s <= BACKOFF_BASE_S  # not 30 s more
