"""No-op job throughput: how many jobs a second the runner claims, runs and finishes when the
handler itself costs nothing — the price of the queue machinery (claim, finish, lease renewal).

A throwaway database gets ``--count`` no-op jobs (enqueued in transactions of 1,000, not timed),
then one ``JobRunner`` at ``--concurrency`` runs them all (``run_until_idle``, bounded by
``--timeout``).  Every job must end ``succeeded``.

    .venv/bin/python -m bench.jobs_noop       # PostgreSQL, 10,000 jobs, 10 at once
    .venv/bin/python -m bench.jobs_noop --backend sqlite --count 2000
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench import _common as c
from gateway.metrics import Metrics
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.workspaces import WorkspaceCache
from scheduler import queue
from scheduler.handlers import HandlerRegistry, JobContext
from scheduler.queue import Job
from scheduler.runner import JobRunner
from sql import connect
from sql.migrations import discover

MAX_COUNT = 100_000
BATCH = 1000


async def noop(ctx: JobContext, job: Job) -> None:
    return None


async def measure(url: str, count: int, concurrency: int, timeout_s: float) -> dict[str, float]:
    settings = Settings.from_env(
        {"DATABASE_URL": url, "JOB_CONCURRENCY": str(concurrency), "LOG_LEVEL": "WARNING"}
    )
    db = await connect(url, pool_size=concurrency + 2)
    try:
        await db.apply_migrations(discover(db.dialect))
        for start in range(0, count, BATCH):
            async with db.transaction() as conn:
                for i in range(start, min(start + BATCH, count)):
                    await queue.enqueue(conn, "NOOP", f"NOOP:{i}", max_attempts=1)
        registry = HandlerRegistry()
        registry.register("NOOP")(noop)
        runtime = Runtime(settings, db, Metrics(), WorkspaceCache(db, 5))
        started = time.perf_counter()
        async with JobRunner(runtime, registry=registry) as runner:
            await runner.run_until_idle(timeout_s=timeout_s)
        elapsed = time.perf_counter() - started
        succeeded = (await queue.job_counts(db))["NOOP"]["succeeded"]
    finally:
        await db.close()
    if succeeded != count:
        raise SystemExit(f"only {succeeded} of {count} jobs succeeded")
    return {"elapsed_s": elapsed, "jobs_per_s": count / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the run")
    args = parser.parse_args()
    if not 0 < args.count <= MAX_COUNT:
        parser.error(f"--count must be in 1..{MAX_COUNT}")
    c.print_header(f"Jobs (no-op): {args.count} jobs at concurrency {args.concurrency}")
    with c.database(args.backend, "jobs") as url:
        result = asyncio.run(measure(url, args.count, args.concurrency, args.timeout))
    print(
        c.table(
            ["backend", "jobs", "concurrency", "seconds", "jobs/s"],
            [
                [
                    args.backend,
                    args.count,
                    args.concurrency,
                    f"{result['elapsed_s']:.2f}",
                    f"{result['jobs_per_s']:,.0f}",
                ]
            ],
        )
    )


if __name__ == "__main__":
    main()
