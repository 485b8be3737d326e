"""Enqueue-to-start across processes: a job enqueued in one process, started by a worker in
another, while the worker has free slots — hookgate's wake-ups beside Procrastinate's.

Systems, each on its own throwaway database (SQLite: a temporary file):

- ``hookgate``: a ``hookgate worker`` process (``JOB_CONCURRENCY`` 10, the default 500 ms poll)
  woken by migration 008's ``NOTIFY`` on its listener connection.
- ``hookgate-polling``: the same worker with ``DATABASE_PGBOUNCER=1`` and no
  ``DATABASE_LISTEN_URL`` (connected straight to PostgreSQL): wake-ups off, it polls — what
  every cross-process job waited for before migration 008.
- ``hookgate-sqlite``: a ``hookgate worker`` on a SQLite file, woken by its
  ``PRAGMA data_version`` check.
- ``procrastinate``: a Procrastinate worker process (``run_worker_async(concurrency=10)``,
  LISTEN/NOTIFY on, its defaults otherwise); bench-only dependency
  (``.venv/bin/pip install procrastinate``).

This process enqueues one job at a time (one autocommit statement, like a webhook's) at
``--rate`` per second for ``--seconds``, far below capacity, after a warm-up of
``WARMUP_JOBS`` jobs.  Each job's payload carries the wall clock just before its enqueue; the
handler, in the worker process, appends that and its own start time to a file.  Reported per
system: enqueue→start p50/p90/p99/max, how long the enqueue call itself took (its commit is
part of every delay), and the worker's CPU per second while idle (before the run) and while
running.

``--webhooks`` adds the issue-13 measurement: EmailBison deliveries posted one at a time at
``--rate`` to an ingest-only ``hookgate serve`` (``HOOKGATE_SCHEDULER=0``), their
post-process jobs run by a ``hookgate worker``: from each delivery's 200 to its job's
``finished_at`` (same machine clock).

    .venv/bin/python -m bench.wakeup                      # 4 systems x 1,000 jobs, ~2 min
    .venv/bin/python -m bench.wakeup --webhooks           # and the webhook→worker runs
    .venv/bin/python -m bench.wakeup --rate 20 --seconds 5 --systems hookgate,procrastinate
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2

from bench import _common as c
from scheduler import queue
from scheduler.handlers import JobContext, register
from scheduler.queue import Job
from sql import connect
from sql.migrations import discover

JOB_TYPE = "BENCH_WAKEUP"
TASK_NAME = "bench_wakeup"
CONCURRENCY = 10
WARMUP_JOBS = 20
MAX_JOBS = 10_000
SYSTEMS = ("hookgate", "hookgate-polling", "hookgate-sqlite", "procrastinate")
IDLE_S = 5.0
WORKER_ENV = {"hookgate-polling": {"DATABASE_PGBOUNCER": "1"}}


def record_start(payload: dict[str, Any]) -> None:
    """In the worker: one line ``<enqueued at> <started at>`` in the run's file."""
    with open(payload["out"], "a") as out:
        out.write(f"{payload['t']} {time.time()}\n")


@register(JOB_TYPE)
async def hookgate_started(ctx: JobContext, job: Job) -> None:
    record_start(job.payload)


@dataclasses.dataclass(slots=True)
class Result:
    system: str
    what: str
    delays_ms: list[float]
    expected: int
    enqueue_ms: list[float] = dataclasses.field(default_factory=list)
    idle_cpu_ms_per_s: float | None = None
    busy_cpu_ms_per_s: float | None = None

    def row(self) -> list[object]:
        delays = sorted(self.delays_ms)
        pct = [f"{c.percentile(delays, q):,.1f}" for q in (50, 90, 99)]
        ran = f"{len(delays):,}" + ("" if len(delays) == self.expected else " (short)")
        top = f"{delays[-1]:,.1f}" if delays else "-"
        calls = sorted(self.enqueue_ms)
        enqueue = f"{c.percentile(calls, 50):.1f} / {c.percentile(calls, 99):.1f}" if calls else "-"
        idle = "-" if self.idle_cpu_ms_per_s is None else f"{self.idle_cpu_ms_per_s:.1f}"
        busy = "-" if self.busy_cpu_ms_per_s is None else f"{self.busy_cpu_ms_per_s:.1f}"
        return [self.system, self.what, ran, *pct, top, enqueue, idle, busy]


def read_delays(path: Path) -> list[float]:
    if not path.exists():
        return []
    pairs = (line.split() for line in path.read_text().splitlines() if line.strip())
    return [(float(started) - float(enqueued)) * 1000 for enqueued, started in pairs]


async def wait_for_lines(path: Path, n: int, timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while len(read_delays(path)) < n:  # noqa: ASYNC110  # another process writes it
                await asyncio.sleep(0.05)


def start_worker(system: str, url: str) -> c.Server:
    if system == "procrastinate":
        argv = [sys.executable, "-m", "bench.wakeup", "--procrastinate-worker", url]
        env = dict(os.environ)
    else:
        argv = [sys.executable, "-m", "gateway.cli", "worker"]
        env = {
            **c.hookgate_env(url, 8000),
            "JOB_HANDLER_MODULES": "bench.wakeup",
            "JOB_CONCURRENCY": str(CONCURRENCY),
            "LOG_LEVEL": "WARNING",
            **WORKER_ENV.get(system, {}),
        }
    return c.Server(f"worker_{system}", argv, env, 0)


class Enqueuer:
    """This process's side: one autocommit enqueue per call."""

    async def open(self, system: str, url: str) -> None:
        self.system = system
        if system == "procrastinate":
            import procrastinate

            self.app = procrastinate.App(
                connector=procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=2)
            )
            await self.app.open_async()
            await self.app.schema_manager.apply_schema_async()
        else:
            self.db = await connect(url, pool_size=2)
            await self.db.apply_migrations(discover(self.db.dialect))
        self.n = 0

    async def enqueue(self, out: Path) -> float:
        """Enqueue one job; return how long the call took (ms): its commit is part of every
        enqueue→start delay."""
        self.n += 1
        payload = {"t": time.time(), "out": str(out)}
        if self.system == "procrastinate":
            await self.app.configure_task(TASK_NAME).defer_async(**payload)
        else:
            await queue.enqueue(
                self.db,
                JOB_TYPE,
                f"{JOB_TYPE}:{self.n}",
                max_attempts=1,
                payload=payload,
            )
        return (time.time() - payload["t"]) * 1000

    async def close(self) -> None:
        if self.system == "procrastinate":
            await self.app.close_async()
        else:
            await self.db.close()


async def measure_jobs(system: str, url: str, args: argparse.Namespace, root: Path) -> Result:
    count = int(args.rate * args.seconds)
    enqueuer = Enqueuer()
    await enqueuer.open(system, url)
    worker = start_worker(system, url)
    try:
        warm = root / "warmup.txt"
        for _ in range(WARMUP_JOBS):
            await enqueuer.enqueue(warm)
            await asyncio.sleep(1 / args.rate)
        await wait_for_lines(warm, WARMUP_JOBS, args.timeout)
        if len(read_delays(warm)) < WARMUP_JOBS:
            raise SystemExit(f"{system}: the warm-up jobs did not run; log: {worker.tail()}")
        cpu0 = c.cpu_seconds(worker.pid)
        await asyncio.sleep(IDLE_S)
        idle = (c.cpu_seconds(worker.pid) - cpu0) / IDLE_S * 1000
        out = root / "run.txt"
        cpu0, t0 = c.cpu_seconds(worker.pid), time.perf_counter()
        enqueue_ms = []
        for i in range(count):
            delay = t0 + i / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            enqueue_ms.append(await enqueuer.enqueue(out))
        await wait_for_lines(out, count, args.timeout)
        busy = (c.cpu_seconds(worker.pid) - cpu0) / (time.perf_counter() - t0) * 1000
    finally:
        worker.stop()
        await enqueuer.close()
    what = f"{args.rate:g} jobs/s x {args.seconds:g} s"
    return Result(system, what, read_delays(out), count, enqueue_ms, idle, busy)


async def measure_webhooks(system: str, url: str, args: argparse.Namespace) -> Result:
    """Deliveries to an ingest-only ``serve``; 200 → the worker's ``finished_at``."""
    count = int(args.rate * args.seconds)
    workspace = c.create_workspace(url)
    web = c.start_hookgate(url, {"HOOKGATE_SCHEDULER": "0", "LOG_LEVEL": "WARNING"})
    worker = start_worker(system, url)
    template = (c.BENCH / "lead_replied.template.json").read_text()
    answered: dict[int, float] = {}
    finished: dict[int, float] = {}

    async def deliver(http: httpx2.AsyncClient, first: int, n: int) -> list[tuple[int, float]]:
        """``n`` deliveries at ``--rate``: (message id, wall clock of its 200) each."""
        done = []
        t0 = time.perf_counter()
        for i in range(n):
            delay = t0 + i / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            key = str(first + i)
            body = template.replace("__REPLY_ID__", key).replace("__LEAD__", key)
            answer = await http.post(workspace.emailbison_path, content=body)
            if answer.status_code != 200:
                raise SystemExit(f"{system}: delivery answered {answer.status_code}")
            done.append((int(answer.json()["message_id"]), time.time()))
        return done

    async def until_finished(n: int) -> None:
        nonlocal finished
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.timeout):
                while len(finished := await finished_at(url)) < n:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)  # the worker process finishes them

    try:
        async with httpx2.AsyncClient(base_url=web.base_url, timeout=10) as http:
            await deliver(http, 1, WARMUP_JOBS)
            await until_finished(WARMUP_JOBS)
            answered = dict(await deliver(http, WARMUP_JOBS + 1, count))
        await until_finished(WARMUP_JOBS + count)
    finally:
        web.stop()
        worker.stop()
    delays = [(finished[m] - t) * 1000 for m, t in answered.items() if m in finished]
    return Result(system, f"webhook {args.rate:g}/s x {args.seconds:g} s", delays, count)


async def finished_at(url: str) -> dict[int, float]:
    """message id → the wall clock its job succeeded at (both backends)."""
    rows = await asyncio.to_thread(
        c.db_fetch,
        url,
        "SELECT message_id, finished_at FROM background_jobs WHERE status = 'succeeded'",
    )
    found = {}
    for row in rows:
        value = row["finished_at"]
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
        found[int(row["message_id"])] = value.timestamp()
    return found


def run(system: str, args: argparse.Namespace, *, webhooks: bool) -> Result:
    backend = "sqlite" if system == "hookgate-sqlite" else "postgres"
    with c.database(backend, f"wake_{system[:8].replace('-', '_')}") as url:
        if webhooks:
            result = asyncio.run(measure_webhooks(system, url, args))
        else:
            with tempfile.TemporaryDirectory(prefix="hg_bench_wakeup_") as folder:
                result = asyncio.run(measure_jobs(system, url, args, Path(folder)))
    delays = sorted(result.delays_ms)
    print(
        f"<!-- {system} {result.what}: p50 {c.percentile(delays, 50):.1f} ms, "
        f"p99 {c.percentile(delays, 99):.1f} ms -->",
        flush=True,
    )
    return result


async def procrastinate_worker(url: str) -> None:
    """``--procrastinate-worker URL``: the Procrastinate side, in a process of its own."""
    import logging

    import procrastinate

    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=CONCURRENCY)
    )

    @app.task(name=TASK_NAME)
    async def started(t: float, out: str) -> None:
        record_start({"t": t, "out": out})

    async with app.open_async():
        await app.run_worker_async(concurrency=CONCURRENCY, wait=True, delete_jobs="never")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.wakeup", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--rate", type=float, default=50.0, help="jobs (or deliveries) per s")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=60.0, help="bound on each wait (s)")
    parser.add_argument("--webhooks", action="store_true", help="also webhook → worker runs")
    parser.add_argument("--procrastinate-worker", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.procrastinate_worker:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(procrastinate_worker(args.procrastinate_worker))
        return
    systems = [s for s in args.systems.split(",") if s]
    for s in systems:
        if s not in SYSTEMS:
            parser.error(f"unknown system {s!r}")
    if not 0 < args.rate * args.seconds <= MAX_JOBS:
        parser.error(f"--rate x --seconds must be in 1..{MAX_JOBS}")
    c.print_header("Wake-ups: enqueue in one process, start in another")
    results = [run(s, args, webhooks=False) for s in systems]
    if args.webhooks:
        results += [run(s, args, webhooks=True) for s in systems if s != "procrastinate"]
    print()
    headers = [
        "system", "load", "jobs", "p50 ms", "p90 ms", "p99 ms", "max ms",
        "enqueue call p50 / p99 ms", "worker CPU idle ms/s", "worker CPU running ms/s",
    ]  # fmt: skip
    print(c.table(headers, [r.row() for r in results]))
    hookgate = next((r for r in results if r.system == "hookgate" and r.what[0].isdigit()), None)
    if hookgate is not None and hookgate.delays_ms:
        p99 = c.percentile(sorted(hookgate.delays_ms), 99)
        print(f"\nTarget: hookgate p99 under 20 ms on PostgreSQL: {p99:.1f} ms, "
              f"{'met' if p99 < 20 else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
