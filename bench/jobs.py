"""No-op jobs on PostgreSQL: hookgate's runner vs Procrastinate vs a bare SKIP LOCKED loop.

Three systems, each on its own throwaway database of the same PostgreSQL server:

- ``hookgate``: the real runner as ``hookgate serve``/``worker`` runs it (``SchedulerService``
  with its APScheduler poll at ``JOB_POLL_INTERVAL_MS`` = 500, ``JobRunner`` at
  ``JOB_CONCURRENCY`` = N, pool of N + 2) and a no-op handler registered through
  ``scheduler.handlers.register``.
- ``procrastinate``: a Procrastinate app (``PsycopgConnector``, pool of N + 2) with one no-op
  task, ``run_worker_async(concurrency=N)``; bench-only dependency
  (``.venv/bin/pip install procrastinate``).
- ``ceiling``: N coroutines, each on its own asyncpg connection, looping over "claim one due
  row of hookgate's ``background_jobs`` with ``FOR UPDATE SKIP LOCKED`` → mark it done"; no
  leases, no metrics, no handler registry: the price of the two statements alone.

Batch mode: ``--count`` jobs are enqueued first (not timed; payload ``{"t": enqueue time}``),
then the workers start and the clock runs until every job has run (bounded by ``--timeout``;
on a timeout the jobs that ran are counted).  Reported: jobs/s and the enqueue-to-start delay
(start = the wall clock in the handler).  With every job enqueued up front, that delay mostly
measures the backlog, so:

Steady mode (``--steady-rate R``): jobs are enqueued one at a time (one autocommit statement
each, like a webhook would) at R per second for ``--steady-seconds``, well below capacity, so
slots are free when each job arrives; the delay from enqueue to start is then what the queue
adds (both woken by LISTEN/NOTIFY: hookgate since migration 008, before it one poll interval).

    .venv/bin/python -m bench.jobs                                   # the full matrix (~11 min)
    .venv/bin/python -m bench.jobs --count 2000 --sweep 10 --big-count 0 --steady-seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson

from bench import _common as c
from gateway.metrics import Metrics
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.workspaces import WorkspaceCache
from scheduler import queue
from scheduler.handlers import JobContext, register
from scheduler.queue import Job
from scheduler.service import SchedulerService
from sql import connect
from sql.migrations import discover

MAX_COUNT = 100_000
BATCH = 1000
JOB_TYPE = "BENCH_NOOP"
SYSTEMS = ("hookgate", "procrastinate", "ceiling")


class Probe:
    """Start delays (seconds) of the jobs that ran, and a wake-up when the expected count ran."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.expected = 0
        self.all_started = asyncio.Event()

    def reset(self, expected: int) -> None:
        self.delays = []
        self.expected = expected
        self.all_started = asyncio.Event()

    def started(self, enqueued_at: float) -> None:
        self.delays.append(time.time() - enqueued_at)
        if len(self.delays) >= self.expected:
            self.all_started.set()


PROBE = Probe()


@register(JOB_TYPE)
async def hookgate_noop(ctx: JobContext, job: Job) -> None:
    PROBE.started(float(job.payload["t"]))


@dataclasses.dataclass(slots=True)
class Result:
    system: str
    mode: str
    jobs: int
    concurrency: int
    ran: int
    seconds: float
    delays: list[float]
    timed_out: bool
    note: str = ""

    @property
    def jobs_per_s(self) -> float:
        return self.ran / self.seconds if self.seconds > 0 else float("nan")


# ---------------------------------------------------------------------------------------------
# hookgate


def _settings(url: str, concurrency: int) -> Settings:
    return Settings.from_env(
        {"DATABASE_URL": url, "JOB_CONCURRENCY": str(concurrency), "LOG_LEVEL": "WARNING"}
    )


async def hookgate_enqueue_one(db: Any, i: int) -> None:
    await queue.enqueue(
        db,
        JOB_TYPE,
        f"{JOB_TYPE}:{i}",
        max_attempts=1,
        payload={"t": time.time()},
    )


async def run_hookgate(url: str, args: argparse.Namespace, count: int, conc: int) -> Result:
    db = await connect(url, pool_size=conc + 2)
    try:
        await db.apply_migrations(discover(db.dialect))
        if not args.steady:
            for start in range(0, count, BATCH):
                async with db.transaction() as conn:
                    for i in range(start, min(start + BATCH, count)):
                        await hookgate_enqueue_one(conn, i)
        runtime = Runtime(_settings(url, conc), db, Metrics(), WorkspaceCache(db, 5))
        service = SchedulerService(runtime)
        PROBE.reset(count)
        started = time.perf_counter()
        await service.start()
        timed_out = False
        try:
            async with asyncio.timeout(args.timeout):
                if args.steady:
                    await _enqueue_steadily(
                        lambda i: hookgate_enqueue_one(db, i), count, args.steady_rate
                    )
                await PROBE.all_started.wait()
                while service.runner.running:  # noqa: ASYNC110  # the last runs record their results
                    await asyncio.sleep(0.005)
        except TimeoutError:
            timed_out = True
        elapsed = time.perf_counter() - started
        await service.stop()
        succeeded = (await queue.job_counts(db)).get(JOB_TYPE, {}).get("succeeded", 0)
    finally:
        await db.close()
    if not timed_out and succeeded != count:
        raise SystemExit(f"hookgate: only {succeeded} of {count} jobs succeeded")
    return Result("hookgate", _mode(args), count, conc, succeeded, elapsed, PROBE.delays, timed_out)


# ---------------------------------------------------------------------------------------------
# Procrastinate (bench-only dependency)


async def run_procrastinate(url: str, args: argparse.Namespace, count: int, conc: int) -> Result:
    import logging

    import procrastinate

    # Its warning that the app lives in __main__ (it would matter for a CLI worker, not here).
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=conc + 2)
    )

    @app.task(name="bench_noop")
    async def noop(t: float) -> None:
        PROBE.started(t)

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        if not args.steady:
            for start in range(0, count, BATCH):
                n = min(BATCH, count - start)
                kwargs: list[dict[str, Any]] = [{"t": time.time()} for _ in range(n)]
                await noop.batch_defer_async(*kwargs)
        PROBE.reset(count)
        started = time.perf_counter()
        worker = asyncio.create_task(
            app.run_worker_async(
                concurrency=conc,
                wait=args.steady,
                install_signal_handlers=False,
                delete_jobs="never",
            )
        )
        timed_out = False
        try:
            async with asyncio.timeout(args.timeout):
                if args.steady:
                    await _enqueue_steadily(
                        lambda i: noop.defer_async(t=time.time()), count, args.steady_rate
                    )
                    await PROBE.all_started.wait()
                    while await _pending_procrastinate(url):  # noqa: ASYNC110  # its statuses land
                        await asyncio.sleep(0.05)
                else:
                    await asyncio.shield(worker)
        except TimeoutError:
            timed_out = True
        elapsed = time.perf_counter() - started
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    rows = await c.pg_fetch(
        url, "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'succeeded'"
    )
    succeeded = int(rows[0]["n"])
    if not timed_out and succeeded != count:
        raise SystemExit(f"procrastinate: only {succeeded} of {count} jobs succeeded")
    return Result(
        "procrastinate", _mode(args), count, conc, succeeded, elapsed, PROBE.delays, timed_out
    )


async def _pending_procrastinate(url: str) -> int:
    rows = await c.pg_fetch(
        url, "SELECT count(*) AS n FROM procrastinate_jobs WHERE status <> 'succeeded'"
    )
    return int(rows[0]["n"])


# ---------------------------------------------------------------------------------------------
# The ceiling: a bare claim loop on hookgate's table (bench-only code).

CLAIM_ONE = """
UPDATE background_jobs SET status = 'running', locked_by = $1, attempts = attempts + 1,
       started_at = now(), updated_at = now()
WHERE id = (
    SELECT id FROM background_jobs WHERE status = 'pending' AND run_at <= now()
    ORDER BY run_at LIMIT 1 FOR UPDATE SKIP LOCKED
)
RETURNING id, payload
"""
MARK_DONE = """
UPDATE background_jobs SET status = 'succeeded', finished_at = now(), updated_at = now()
WHERE id = $1
"""


async def _ceiling_worker(url: str, name: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        while True:
            row = await conn.fetchrow(CLAIM_ONE, name)
            if row is None:
                return
            PROBE.started(float(orjson.loads(row["payload"])["t"]))
            await conn.execute(MARK_DONE, row["id"])
    finally:
        await conn.close()


async def run_ceiling(url: str, args: argparse.Namespace, count: int, conc: int) -> Result:
    db = await connect(url, pool_size=2)
    try:
        await db.apply_migrations(discover(db.dialect))
        for start in range(0, count, BATCH):
            async with db.transaction() as conn:
                for i in range(start, min(start + BATCH, count)):
                    await hookgate_enqueue_one(conn, i)
    finally:
        await db.close()
    PROBE.reset(count)
    started = time.perf_counter()
    workers = [asyncio.create_task(_ceiling_worker(url, f"w{i}")) for i in range(conc)]
    timed_out = False
    try:
        async with asyncio.timeout(args.timeout):
            await asyncio.gather(*workers)
    except TimeoutError:
        timed_out = True
    elapsed = time.perf_counter() - started
    rows = await c.pg_fetch(
        url, "SELECT count(*) AS n FROM background_jobs WHERE status = 'succeeded'"
    )
    return Result(
        "ceiling", "batch", count, conc, int(rows[0]["n"]), elapsed, PROBE.delays, timed_out
    )


# ---------------------------------------------------------------------------------------------


async def _enqueue_steadily(
    enqueue: Callable[[int], Awaitable[object]], count: int, rate: float
) -> None:
    """Enqueue ``count`` jobs at ``rate`` per second, on a fixed schedule (not back to back)."""
    t0 = time.perf_counter()
    for i in range(count):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await enqueue(i)


def _mode(args: argparse.Namespace) -> str:
    return f"steady {args.steady_rate:g}/s" if args.steady else "batch"


RUNNERS = {"hookgate": run_hookgate, "procrastinate": run_procrastinate, "ceiling": run_ceiling}


def measure(system: str, args: argparse.Namespace, count: int, conc: int) -> Result:
    with c.pg_database(f"jobs_{system[:5]}") as url:
        result = asyncio.run(RUNNERS[system](url, args, count, conc))
    tail = " (TIMED OUT)" if result.timed_out else ""
    print(
        f"<!-- {system} {result.mode} {count} jobs c={conc}: {result.jobs_per_s:,.0f} jobs/s"
        f"{tail} -->",
        flush=True,
    )
    return result


def row(r: Result, poll_ms: int) -> list[object]:
    delays = sorted(d * 1000 for d in r.delays)
    p99 = c.percentile(delays, 99)
    jobs = f"{r.ran:,} of {r.jobs:,} (timeout)" if r.timed_out else f"{r.jobs:,}"
    verdict = ""
    if r.mode.startswith("steady") and r.system == "hookgate":
        verdict = f"p99 {'<' if p99 < poll_ms else '>='} {poll_ms} ms poll"
    return [
        r.system,
        r.mode,
        jobs,
        r.concurrency,
        f"{r.seconds:.1f}",
        "-" if r.mode.startswith("steady") else f"{r.jobs_per_s:,.0f}",
        f"{c.percentile(delays, 50):,.1f}",
        f"{p99:,.1f}",
        f"{delays[-1]:,.1f}" if delays else "-",
        verdict,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.jobs", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--count", type=int, default=10_000, help="jobs per sweep run")
    parser.add_argument("--sweep", default="5,10,20,40", help="concurrency values to try")
    parser.add_argument(
        "--big-count", type=int, default=100_000, help="jobs at each system's best (0: skip)"
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per run (bound)")
    parser.add_argument("--steady-rate", type=float, default=50.0, help="jobs/s in steady mode")
    parser.add_argument("--steady-seconds", type=float, default=20.0, help="0: skip steady")
    parser.add_argument("--steady-concurrency", type=int, default=10)
    args = parser.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    for s in systems:
        if s not in SYSTEMS:
            parser.error(f"unknown system {s!r}")
    if not 0 < args.count <= MAX_COUNT or not 0 <= args.big_count <= MAX_COUNT:
        parser.error(f"counts must be in 1..{MAX_COUNT}")
    sweep = sorted({int(x) for x in args.sweep.split(",")} | {10})
    poll_ms = Settings().job_poll_interval_ms
    c.print_header("Jobs: hookgate vs Procrastinate vs SKIP LOCKED ceiling")
    results: list[Result] = []
    args.steady = False
    for conc in sweep:
        for system in systems:
            results.append(measure(system, args, args.count, conc))
    if args.big_count:
        for system in systems:
            mine = [r for r in results if r.system == system and not r.timed_out]
            best = max(mine, key=lambda r: r.jobs_per_s).concurrency if mine else 10
            results.append(measure(system, args, args.big_count, best))
    if args.steady_seconds > 0:
        args.steady = True
        steady_count = int(args.steady_rate * args.steady_seconds)
        for system in (s for s in systems if s != "ceiling"):
            results.append(measure(system, args, steady_count, args.steady_concurrency))
    print()
    headers = [
        "system", "mode", "jobs", "concurrency", "seconds", "jobs/s",
        "enqueue→start p50 ms", "p99 ms", "max ms", "target",
    ]  # fmt: skip
    print(c.table(headers, [row(r, poll_ms) for r in results]))
    print()
    batch = {
        (r.system, r.concurrency): r for r in results if r.mode == "batch" and r.jobs == args.count
    }
    verdicts = []
    for conc in sweep:
        hg, pr = batch.get(("hookgate", conc)), batch.get(("procrastinate", conc))
        if hg and pr:
            ratio = hg.jobs_per_s / pr.jobs_per_s
            verdicts.append(
                [
                    conc,
                    f"{hg.jobs_per_s:,.0f}",
                    f"{pr.jobs_per_s:,.0f}",
                    f"{ratio:.1f}x",
                    "met" if ratio >= 5 else "MISSED",
                ]
            )
    if verdicts:
        print(
            f"Target: hookgate jobs/s >= 5x Procrastinate's at the same concurrency "
            f"({args.count:,} jobs)\n"
        )
        print(
            c.table(
                ["concurrency", "hookgate jobs/s", "procrastinate jobs/s", "ratio", "verdict"],
                verdicts,
            )
        )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
