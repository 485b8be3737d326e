"""Why hookgate: 100 concurrent identical deliveries against hookgate and against the naive
pattern it replaces (``bench/naive_app.py``: look up, plain INSERT, slow step inline).

    .venv/bin/python -m bench.naive                 # 5 rounds of 100 concurrent copies
    .venv/bin/python -m bench.naive --rounds 2      # a quick trial

Each round POSTs 100 copies of one EmailBison LEAD_REPLIED delivery (a fresh ``reply.id`` per
round) at the same moment, from 100 connections opened beforehand.  Counted per target: answers
by status class, 5xx answers, rows stored per delivery, duplicate rows, how often the slow
work was started for one delivery (hookgate: post-process jobs; naive: inline slow steps), and
the client-side p50/p99 latency over all requests of all rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import gc
import json
import sys
import time
import urllib.request

import aiohttp

from bench import _common as c

TEMPLATE = (c.BENCH / "lead_replied.template.json").read_text()
TARGETS = ("hookgate-pg", "hookgate-sqlite", "naive-pg-unique", "naive-pg-no-unique")


@dataclasses.dataclass(slots=True)
class Result:
    target: str
    requests: int
    statuses: dict[str, int]
    errors_5xx: int
    rows: int
    deliveries: int
    duplicate_rows: int
    slow_work: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def body(reply_id: int, lead: int) -> bytes:
    return TEMPLATE.replace("__REPLY_ID__", str(reply_id)).replace("__LEAD__", str(lead)).encode()


async def burst(url: str, copies: int, payload: bytes) -> list[tuple[int, float]]:
    """``copies`` identical POSTs released together, each on its own connection."""
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Open the connections first (one small request each), so the burst measures the
        # deliveries and not 100 TCP handshakes.
        base = url.split("/webhooks/", 1)[0]
        await asyncio.gather(*(_get(session, base + "/healthz") for _ in range(copies)))
        gate = asyncio.Event()

        async def one() -> tuple[int, float]:
            await gate.wait()
            started = time.perf_counter()
            async with session.post(
                url, data=payload, headers={"Content-Type": "application/json"}
            ) as answer:
                await answer.read()
                return answer.status, (time.perf_counter() - started) * 1000

        tasks = [asyncio.create_task(one()) for _ in range(copies)]
        await asyncio.sleep(0.05)
        # The load generator's own collector must not pause it mid-burst: a full collection of
        # this process (~12 ms, in the same round of every run) delayed half of a burst's
        # answers, which was measured as the server's latency.
        gc.collect()
        gc.disable()
        try:
            gate.set()
            return await asyncio.gather(*tasks)
        finally:
            gc.enable()


async def _get(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(url) as answer:
        await answer.read()


def count(target: str, url: str, keys: list[str]) -> tuple[int, int, int]:
    """(rows stored for the burst keys, duplicate rows, slow-work starts) from the database."""
    in_keys = ",".join(f"'{k}'" for k in keys)
    if target.startswith("naive"):
        rows = c.db_fetch(
            url,
            f"SELECT reply_id AS k, count(*) AS n FROM naive_messages"
            f" WHERE reply_id IN ({in_keys}) GROUP BY reply_id",
        )
    else:
        rows = c.db_fetch(
            url,
            f"SELECT email_bison_reply_id AS k, count(*) AS n FROM messages"
            f" WHERE email_bison_reply_id IN ({in_keys}) GROUP BY email_bison_reply_id",
        )
    stored = sum(int(r["n"]) for r in rows)
    duplicates = sum(int(r["n"]) - 1 for r in rows)
    if target.startswith("naive"):
        return stored, duplicates, -1  # the app counts its slow steps itself
    jobs = c.db_fetch(
        url,
        "SELECT count(*) AS n FROM background_jobs j JOIN messages m ON m.id = j.message_id"
        f" WHERE m.email_bison_reply_id IN ({in_keys})",
    )
    return stored, duplicates, int(jobs[0]["n"])


def measure(target: str, args: argparse.Namespace) -> Result:
    backend = "sqlite" if "sqlite" in target else "postgres"
    with c.database(backend, target.split("-")[0]) as url:
        if target.startswith("naive"):
            unique = "1" if target == "naive-pg-unique" else "0"
            server = c.start_uvicorn_app(
                "naive",
                "bench.naive_app:app",
                {
                    "BENCH_DATABASE_URL": url,
                    "BENCH_NAIVE_UNIQUE": unique,
                    "BENCH_NAIVE_SLOW_S": str(args.slow_s),
                },
            )
            path = "/webhooks/emailbison/naive"
        else:
            path = c.create_workspace(url).emailbison_path
            server = c.start_hookgate(url)
        with server:
            endpoint = server.base_url + path
            # Warm-up: distinct deliveries, enough of them at once to open the whole pool.
            asyncio.run(warmup(endpoint, args.copies))
            latencies: list[float] = []
            statuses: collections.Counter[str] = collections.Counter()
            keys: list[str] = []
            for round_no in range(args.rounds):
                reply_id = 7_000_000 + round_no
                keys.append(str(reply_id))
                answers = asyncio.run(burst(endpoint, args.copies, body(reply_id, round_no)))
                for status, ms in answers:
                    statuses[f"{status // 100}xx"] += 1
                    latencies.append(ms)
                time.sleep(args.slow_s + 0.3)  # let inline slow steps of this round finish
            slow_runs = _naive_slow_runs(server.base_url) if target.startswith("naive") else 0
        stored, duplicates, jobs = count(target, url, keys)
    latencies.sort()
    return Result(
        target=target,
        requests=len(latencies),
        statuses=dict(sorted(statuses.items())),
        errors_5xx=statuses.get("5xx", 0),
        rows=stored,
        deliveries=args.rounds,
        duplicate_rows=duplicates,
        slow_work=jobs if jobs >= 0 else slow_runs - _WARMUP_SLOW_RUNS[0],
        p50_ms=c.percentile(latencies, 50),
        p99_ms=c.percentile(latencies, 99),
        max_ms=latencies[-1],
    )


_WARMUP_SLOW_RUNS = [0]


async def warmup(endpoint: str, copies: int) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> int:
            async with session.post(endpoint, data=body(6_000_000 + i, 9_000 + i)) as answer:
                await answer.read()
                return answer.status

        statuses = await asyncio.gather(*(one(i) for i in range(copies)))
    _WARMUP_SLOW_RUNS[0] = sum(1 for s in statuses if s == 200)


def _naive_slow_runs(base_url: str) -> int:
    with urllib.request.urlopen(base_url + "/stats", timeout=5) as answer:
        return int(json.loads(answer.read())["slow_runs"])


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"### {args.copies} concurrent identical deliveries x {args.rounds} rounds "
        f"(naive slow step {args.slow_s:g}s inline)\n"
    )
    headers = [
        "target", "requests", "answers", "5xx", "rows stored / deliveries", "duplicate rows",
        "slow work started per delivery", "p50 ms", "p99 ms", "max ms",
    ]  # fmt: skip
    rows = [
        (
            r.target,
            r.requests,
            " ".join(f"{k}: {v}" for k, v in r.statuses.items()),
            r.errors_5xx,
            f"{r.rows} / {r.deliveries}",
            r.duplicate_rows,
            f"{r.slow_work / r.deliveries:g}",
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.max_ms:.0f}",
        )
        for r in results
    ]
    print(c.table(headers, rows))
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.naive", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--copies", type=int, default=100, help="concurrent copies per round")
    parser.add_argument("--slow-s", type=float, default=0.2, help="the naive app's inline step")
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"subset of {TARGETS}")
    parser.add_argument("--no-header", action="store_true")
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    for target in targets:
        if target not in TARGETS:
            parser.error(f"unknown target {target!r}")
    if not args.no_header:
        c.print_header("Naive pattern vs hookgate")
    results = [measure(target, args) for target in targets]
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
