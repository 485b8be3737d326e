"""Ingest throughput, latency, CPU and memory: live ``hookgate serve`` next to two CEILINGS.

One command measures, on one machine in one run, what issue 15 asks for:

1. under wrk (``-t1 -c64 -d<duration>s``, unique EmailBison replies, then 50% duplicates), each
   repeat in this order: the per-request ceiling (``bench/ceiling_app.py``), the batched ceiling
   (``bench/ceiling_batch_app.py``), hookgate on PostgreSQL (scheduler on) and on SQLite (the
   embedded default, ``synchronous=FULL``).  Each gets a fresh database, a fresh server and a
   warm-up; then req/s, latency, CPU per answered delivery (``/proc/<pid>/stat`` of the server
   and of the PostgreSQL backends of its database, before and after) and the rows stored;
2. a storm (``bench/storm.py``): 100 identical copies released together, a few rounds, on both
   backends;
3. the server's RSS through ``--memory-deliveries`` (100,000) deliveries on both backends
   (``bench/memory.py``).

    .venv/bin/python -m bench.ingest                       # the full run (~25 min on 2 cores)
    .venv/bin/python -m bench.ingest --duration 5 --warmup 1 --repeats 1 --storm-rounds 2 \\
        --memory-deliveries 0                              # a quick trial (~3 min)

Prints markdown: every run, then each target against both ceilings with issue 15's verdicts
(``bench/ingest_report.py``), the storm and the memory runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

from bench import _common as c
from bench import ingest_report, memory, storm
from bench.ingest_report import Result

LUA = str(c.BENCH / "wrk_emailbison.lua")
TEMPLATE = str(c.BENCH / "lead_replied.template.json")
# ceiling-pg: the per-request ceiling; ceiling-batch-pg: the same two inserts, grouped.
# hookgate-pg: ``hookgate serve`` as shipped, its job scheduler running in the same process (it
# claims and runs the post-process jobs the deliveries enqueue, on the same event loop).
# hookgate-sqlite: the embedded default (synchronous=FULL).
# Opt-in: hookgate-pg-nosched (HOOKGATE_SCHEDULER=0, an ingest-only replica, jobs left to
# ``hookgate worker``); ceiling-pg-noreset (the ceiling without asyncpg's reset query on pool
# release); hookgate-sqlite-normal (DATABASE_SQLITE_SYNCHRONOUS=normal, to price FULL).
TARGETS = ("ceiling-pg", "ceiling-batch-pg", "hookgate-pg", "hookgate-sqlite")
EXTRA_TARGETS = ("hookgate-pg-nosched", "ceiling-pg-noreset", "hookgate-sqlite-normal")
TARGET_ENV = {
    "hookgate-pg-nosched": {"HOOKGATE_SCHEDULER": "0"},
    "ceiling-pg-noreset": {"BENCH_POOL_RESET": "0"},
    "hookgate-sqlite-normal": {"DATABASE_SQLITE_SYNCHRONOUS": "normal"},
}
CEILING_APPS = {
    "ceiling-pg": "bench.ceiling_app:app",
    "ceiling-pg-noreset": "bench.ceiling_app:app",
    "ceiling-batch-pg": "bench.ceiling_batch_app:app",
}


def run_wrk(
    base_url: str,
    path: str,
    *,
    duration_s: float,
    connections: int,
    threads: int,
    dup_ratio: float,
    run: int,
) -> dict[str, object]:
    env = dict(os.environ)
    env.update(
        BENCH_PATH=path,
        BENCH_BODY_TEMPLATE=TEMPLATE,
        BENCH_DUP_RATIO=str(dup_ratio),
        BENCH_RUN=str(run),
    )
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        LUA,
        base_url,
    ]
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            parsed: dict[str, object] = json.loads(line.removeprefix("BENCH_JSON "))
            return parsed
    raise RuntimeError(
        f"wrk gave no summary (exit {done.returncode}): {done.stderr or done.stdout}"
    )


def count_rows(database_url: str) -> tuple[int, int]:
    messages = c.db_fetch(database_url, "SELECT count(*) AS n FROM messages")[0]["n"]
    jobs = c.db_fetch(database_url, "SELECT count(*) AS n FROM background_jobs")[0]["n"]
    return int(messages), int(jobs)


def start_server(target: str, url: str, workspace: c.Workspace) -> c.Server:
    if target in CEILING_APPS:
        env = {"BENCH_DATABASE_URL": url, "BENCH_WORKSPACE_ID": workspace.id}
        return c.start_uvicorn_app(
            target, CEILING_APPS[target], {**env, **TARGET_ENV.get(target, {})}
        )
    return c.start_hookgate(url, TARGET_ENV.get(target))


def measure(
    target: str, mix: str, dup_ratio: float, repeat: int, args: argparse.Namespace
) -> Result:
    backend = "sqlite" if "sqlite" in target else "postgres"
    with c.database(backend, target.split("-")[0]) as url:
        workspace = c.create_workspace(url)
        c.fill_backlog(url, workspace.id, args.backlog)
        with start_server(target, url, workspace) as server:
            wrk = {"connections": args.connections, "threads": args.threads, "dup_ratio": dup_ratio}
            if args.warmup > 0:
                run_wrk(
                    server.base_url, workspace.emailbison_path, duration_s=args.warmup, run=1, **wrk
                )
            # PostgreSQL backends of this database (the pool is warm by now; any opened during
            # the run are read afterwards): their CPU too.
            postgres = backend == "postgres"
            pg_before = c.cpu_by_pid(c.pg_backend_pids(url)) if postgres else {}
            cpu_before = c.cpu_seconds(server.pid)
            summary = run_wrk(
                server.base_url, workspace.emailbison_path, duration_s=args.duration, run=2, **wrk
            )
            cpu_after = c.cpu_seconds(server.pid)
            pg_after = c.cpu_by_pid([*pg_before, *c.pg_backend_pids(url)]) if postgres else {}
            if server.proc.poll() is not None:
                raise RuntimeError(f"{target} died during the run: {server.tail()}")
            problems = server.problems()
        messages, jobs = count_rows(url)
    requests = int(summary["requests"])  # type: ignore[call-overload]
    duration_s = int(summary["duration_us"]) / 1e6  # type: ignore[call-overload]
    latency: dict[str, float] = summary["latency_us"]  # type: ignore[assignment]
    errors: dict[str, int] = summary["errors"]  # type: ignore[assignment]
    answered = max(requests - errors["status"], 1)
    return Result(
        target=target,
        mix=mix,
        repeat=repeat,
        rps=requests / duration_s,
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        non_2xx=errors["status"],
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        answered=answered,
        cpu_us=(cpu_after - cpu_before) / answered * 1e6,
        db_cpu_us=c.cpu_spent(pg_before, pg_after) / answered * 1e6 if postgres else None,
        messages=messages,
        jobs=jobs,
        log_problems=problems,
    )


def run_memory(backend: str, args: argparse.Namespace) -> memory.Summary:
    return memory.measure(
        argparse.Namespace(
            backend=backend,
            deliveries=args.memory_deliveries,
            every=args.memory_every,
            connections=args.memory_connections,
            dup_ratio=args.memory_dup_ratio,
            max_seconds=args.memory_max_seconds,
            scheduler="on",
        )
    )


def memory_table(summaries: list[memory.Summary]) -> str:
    rows = []
    for s in summaries:
        first, half, last = s.samples[0], s.half, s.samples[-1]
        rows.append(
            (
                s.backend,
                f"{last[0]:,}",
                ", ".join(f"{k}: {v:,}" for k, v in sorted(s.statuses.items())),
                f"{first[1] / 1024:.1f}",
                f"{half[1] / 1024:.1f} at {half[0]:,}",
                f"{last[1] / 1024:.1f}",
                f"{s.growth:+.1%}",
                "flat" if s.growth < memory.FLAT and s.alive else "GROWS",
            )
        )
    headers = [
        "backend", "deliveries", "answers", "RSS MiB at start", "RSS MiB at half",
        "RSS MiB at end", "growth half → end", f"< {memory.FLAT:.0%}",
    ]  # fmt: skip
    return c.table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (2 cores here)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per target and mix")
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help=f"comma-separated, from {TARGETS + EXTRA_TARGETS}",
    )
    parser.add_argument(
        "--mixes", default="unique,dup50", help="comma-separated subset of unique,dup50"
    )
    parser.add_argument(
        "--sync-commit",
        choices=("on", "off"),
        default="on",
        help="synchronous_commit of the throwaway PostgreSQL databases (off: no fsync wait)",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=50_000,
        help="earlier messages (with leads and finished jobs) stored before each run; 0: empty",
    )
    parser.add_argument("--storm-rounds", type=int, default=5, help="0: no storm")
    parser.add_argument("--storm-copies", type=int, default=100)
    parser.add_argument(
        "--memory-deliveries", type=int, default=100_000, help="per backend; 0: no memory run"
    )
    memory.add_arguments(parser, prefix="memory-")
    parser.add_argument("--no-header", action="store_true", help="skip the machine/versions table")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk (see bench/README.md)", file=sys.stderr)
        return 2
    c.SYNC_COMMIT["value"] = args.sync_commit
    mixes = {"unique": 0.0, "dup50": 0.5}
    targets = [t for t in args.targets.split(",") if t]
    for target in targets:
        if target not in TARGETS + EXTRA_TARGETS:
            parser.error(f"unknown target {target!r}")
    if not args.no_header:
        c.print_header("Ingest benchmark")
    results: list[Result] = []
    for mix in args.mixes.split(","):
        for repeat in range(1, args.repeats + 1):
            for target in targets:
                result = measure(target, mix, mixes[mix], repeat, args)
                print(
                    f"<!-- {target} {mix} run {repeat}: {result.rps:,.0f} req/s, "
                    f"p99 {result.p99_ms:.1f} ms, {result.total_cpu_us:,.0f} µs/delivery -->",
                    flush=True,
                )
                results.append(result)
    storms = [
        storm.measure(target, args.storm_rounds, args.storm_copies)
        for target in storm.TARGETS
        if args.storm_rounds > 0
    ]
    memories = [
        run_memory(backend, args)
        for backend in ("postgres", "sqlite")
        if args.memory_deliveries > 0
    ]
    print()
    if results:
        print(ingest_report.runs_table(results, args) + "\n")
        print(ingest_report.ratios_table(results)[0] + "\n")
    if storms:
        print(
            f"### {args.storm_copies} identical copies released together x "
            f"{args.storm_rounds} rounds (hookgate serve, scheduler on)\n"
        )
        print(storm.report(storms) + "\n")
    if memories:
        print(
            f"### RSS of hookgate serve (scheduler on) through {args.memory_deliveries:,} "
            f"deliveries, {args.memory_connections} connections, "
            f"{args.memory_dup_ratio:.0%} duplicates\n"
        )
        print(memory_table(memories) + "\n")
    for line in ingest_report.warnings(results):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
