"""``hookgate worker`` and ``hookgate jobs list|stats|retry`` (added to the parser by
``gateway.cli``)."""

from __future__ import annotations

import argparse

from gateway.commands import print_json, run_with_runtime
from gateway.runtime import Runtime
from gateway.settings import Settings
from scheduler import queue
from scheduler.service import run_worker


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        if runtime.clients is not None:
            runtime.clients.report_off()
        await run_worker(runtime)
        return 0

    return run_with_runtime(settings, work)


def cmd_jobs_list(settings: Settings, args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        rows = await queue.list_jobs(
            runtime.db, status=args.status, job_type=args.type, limit=args.limit
        )
        if args.json:
            print_json(rows)
            return 0
        for row in rows:
            error = (row["last_error"] or "").replace("\n", " ")
            print(
                f"{row['id']:>8}  {row['type']:<30} {row['status']:<9} "
                f"{row['attempts']}/{row['max_attempts']}  run_at={row['run_at']:%Y-%m-%d %H:%M:%S}"
                + (f"  error={error[:80]}" if error else "")
            )
        return 0

    return run_with_runtime(settings, work)


def cmd_jobs_stats(settings: Settings, args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        counts = await queue.job_counts(runtime.db)
        if args.json:
            print_json(counts)
            return 0
        print(f"{'type':<32}" + "".join(f"{s:>11}" for s in queue.STATUSES))
        for job_type, per_status in counts.items():
            print(f"{job_type:<32}" + "".join(f"{per_status[s]:>11}" for s in queue.STATUSES))
        return 0

    return run_with_runtime(settings, work)


def cmd_jobs_retry(settings: Settings, args: argparse.Namespace) -> int:
    async def work(runtime: Runtime) -> int:
        if args.dead:
            print(f"{await queue.retry_dead_jobs(runtime.db)} dead jobs back to pending")
            return 0
        if await queue.retry_job(runtime.db, args.id):
            print(f"job {args.id} is pending and due now")
            return 0
        print(f"job {args.id} not retried: it does not exist, or is running or succeeded")
        return 1

    return run_with_runtime(settings, work)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = commands.add_parser(
        "worker", help="run the job scheduler without the HTTP server, until SIGTERM/SIGINT"
    )
    worker.set_defaults(func=cmd_worker)

    jobs = commands.add_parser("jobs", help="inspect and retry background jobs")
    job_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    listing = job_commands.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--status", choices=queue.STATUSES)
    listing.add_argument("--type", help="a job type, e.g. EMAIL_INBOUND_POST_PROCESS")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(func=cmd_jobs_list)

    stats = job_commands.add_parser("stats", help="job counts by type and status")
    stats.add_argument("--json", action="store_true", help='print {"TYPE": {"status": n}}')
    stats.set_defaults(func=cmd_jobs_stats)

    retry = job_commands.add_parser(
        "retry", help="put a dead job (or every dead job) back to pending; make a pending one due"
    )
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the job id")
    which.add_argument("--dead", action="store_true", help="every dead job")
    retry.set_defaults(func=cmd_jobs_retry)
