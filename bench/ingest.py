"""Ingest throughput and latency: live ``hookgate serve`` under wrk, next to a CEILING.

For each delivery mix (all unique, then 50% duplicates) and each repeat, in this order:
the ceiling (``bench/ceiling_app.py``, PostgreSQL), hookgate on PostgreSQL, hookgate on SQLite.
Each measurement gets a fresh database, a fresh server, a short warm-up run, then the measured
wrk run (``-t1 -c64 -d<duration>s``).  Afterwards the stored rows are counted.

    .venv/bin/python -m bench.ingest                     # 20 s per measurement
    .venv/bin/python -m bench.ingest --duration 5 --warmup 2 --repeats 1   # a quick trial

Prints a markdown table and the verdict against issue 9's target (PostgreSQL, 64 connections:
hookgate requests/s >= 70% of the ceiling's, p99 <= 1.5x the ceiling's).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys

from bench import _common as c

TARGET_RPS_RATIO = 0.70
TARGET_P99_RATIO = 1.5
LUA = str(c.BENCH / "wrk_emailbison.lua")
TEMPLATE = str(c.BENCH / "lead_replied.template.json")
# hookgate-pg: ``hookgate serve`` as shipped, its job scheduler running in the same process (it
# claims and runs the post-process jobs the deliveries enqueue, on the same event loop).
# hookgate-pg-nosched: the same with HOOKGATE_SCHEDULER=0, an ingest-only replica (jobs left
# to ``hookgate worker``), which does what the ceiling does and is the like-for-like comparison.
# ceiling-pg-noreset (opt-in): the ceiling without asyncpg's reset query on pool release.
# hookgate-sqlite-normal (opt-in): SQLite with DATABASE_SQLITE_SYNCHRONOUS=normal (no WAL sync
# per commit), to price the default synchronous=FULL of hookgate-sqlite.
TARGETS = ("ceiling-pg", "hookgate-pg", "hookgate-pg-nosched", "hookgate-sqlite")
EXTRA_TARGETS = ("ceiling-pg-noreset", "hookgate-sqlite-normal")
TARGET_ENV = {
    "hookgate-pg-nosched": {"HOOKGATE_SCHEDULER": "0"},
    "ceiling-pg-noreset": {"BENCH_POOL_RESET": "0"},
    "hookgate-sqlite-normal": {"DATABASE_SQLITE_SYNCHRONOUS": "normal"},
}


@dataclasses.dataclass(slots=True)
class Result:
    target: str
    mix: str
    repeat: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    cpu_us_per_req: float
    pg_cpu_us_per_req: float | None
    messages: int
    jobs: int
    generated_fresh: int
    log_problems: list[str]


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


def measure(
    target: str, mix: str, dup_ratio: float, repeat: int, args: argparse.Namespace
) -> Result:
    backend = "sqlite" if "sqlite" in target else "postgres"
    with c.database(backend, target.split("-")[0]) as url:
        workspace = c.create_workspace(url)
        if target.startswith("ceiling"):
            server = c.start_uvicorn_app(
                "ceiling",
                "bench.ceiling_app:app",
                {
                    "BENCH_DATABASE_URL": url,
                    "BENCH_WORKSPACE_ID": workspace.id,
                    **TARGET_ENV.get(target, {}),
                },
            )
        else:
            server = c.start_hookgate(url, TARGET_ENV.get(target))
        with server:
            wrk = {"connections": args.connections, "threads": args.threads, "dup_ratio": dup_ratio}
            if args.warmup > 0:
                run_wrk(
                    server.base_url, workspace.emailbison_path, duration_s=args.warmup, run=1, **wrk
                )
            # PostgreSQL backends of this database (the pool is warm by now): their CPU too.
            backends = c.pg_backend_pids(url) if backend == "postgres" else []
            pg_before = c.total_cpu_seconds(backends)
            cpu_before = c.cpu_seconds(server.pid)
            summary = run_wrk(
                server.base_url, workspace.emailbison_path, duration_s=args.duration, run=2, **wrk
            )
            cpu_after = c.cpu_seconds(server.pid)
            pg_after = c.total_cpu_seconds(backends)
            if server.proc.poll() is not None:
                raise RuntimeError(f"{target} died during the run: {server.tail()}")
            problems = server.problems()
        messages, jobs = count_rows(url)
    requests = int(summary["requests"])  # type: ignore[call-overload]
    duration_s = int(summary["duration_us"]) / 1e6  # type: ignore[call-overload]
    latency: dict[str, float] = summary["latency_us"]  # type: ignore[assignment]
    errors: dict[str, int] = summary["errors"]  # type: ignore[assignment]
    generated: dict[str, int] = summary["generated"]  # type: ignore[assignment]
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
        cpu_us_per_req=(cpu_after - cpu_before) / max(requests, 1) * 1e6,
        pg_cpu_us_per_req=(pg_after - pg_before) / max(requests, 1) * 1e6 if backends else None,
        messages=messages,
        jobs=jobs,
        generated_fresh=generated["fresh"],
        log_problems=problems,
    )


def _median(results: list[Result], attr: str) -> float:
    return statistics.median(float(getattr(r, attr)) for r in results)


def report(results: list[Result], args: argparse.Namespace) -> bool:
    print(
        f"### Ingest: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s "
        f"(warm-up {args.warmup:g}s), EmailBison LEAD_REPLIED, "
        f"PostgreSQL synchronous_commit={args.sync_commit}\n"
    )
    rows = [
        (
            r.target,
            r.mix,
            r.repeat,
            f"{r.rps:,.0f}",
            f"{r.p50_ms:.1f}",
            f"{r.p90_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.max_ms:.0f}",
            r.non_2xx,
            r.socket_errors,
            f"{r.cpu_us_per_req:,.0f}",
            "-" if r.pg_cpu_us_per_req is None else f"{r.pg_cpu_us_per_req:,.0f}",
            f"{r.messages:,}",
            f"{r.jobs:,}",
        )
        for r in results
    ]
    headers = [
        "target", "mix", "run", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "non-2xx",
        "socket err", "server CPU µs/req", "PG CPU µs/req", "messages stored", "jobs stored",
    ]  # fmt: skip
    print(c.table(headers, rows))
    print()
    verdict_rows = []
    ok = True
    for mix, target in itertools.product(
        dict.fromkeys(r.mix for r in results), ("hookgate-pg-nosched", "hookgate-pg")
    ):
        ceiling = [r for r in results if r.mix == mix and r.target == "ceiling-pg"]
        hookgate = [r for r in results if r.mix == mix and r.target == target]
        if not ceiling or not hookgate:
            continue
        rps_ratio = _median(hookgate, "rps") / _median(ceiling, "rps")
        p99_ratio = _median(hookgate, "p99_ms") / _median(ceiling, "p99_ms")
        met = rps_ratio >= TARGET_RPS_RATIO and p99_ratio <= TARGET_P99_RATIO
        ok = ok and met
        verdict_rows.append(
            (
                target,
                mix,
                f"{_median(hookgate, 'rps'):,.0f} / {_median(ceiling, 'rps'):,.0f}",
                f"{rps_ratio:.0%} (target >= {TARGET_RPS_RATIO:.0%})",
                f"{_median(hookgate, 'p99_ms'):.1f} / {_median(ceiling, 'p99_ms'):.1f}",
                f"{p99_ratio:.2f}x (target <= {TARGET_P99_RATIO}x)",
                "met" if met else "MISSED",
            )
        )
    if verdict_rows:
        print("### Target (PostgreSQL, medians over runs): hookgate vs ceiling\n")
        headers = [
            "hookgate", "mix", "req/s hookgate / ceiling", "ratio", "p99 ms hookgate / ceiling",
            "ratio", "verdict",
        ]  # fmt: skip
        print(c.table(headers, verdict_rows))
        print()
    problems = [
        r
        for r in results
        if r.non_2xx
        or r.socket_errors
        or (r.target.startswith("hookgate") and r.jobs != r.messages)
    ]
    for r in problems:
        print(
            f"WARNING {r.target} {r.mix} run {r.repeat}: non-2xx={r.non_2xx} "
            f"socket errors={r.socket_errors} messages={r.messages} jobs={r.jobs}"
        )
        for line in r.log_problems:
            print(f"    server log: {line}")
    return ok


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
                    f"p99 {result.p99_ms:.1f} ms -->",
                    flush=True,
                )
                results.append(result)
    print()
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
