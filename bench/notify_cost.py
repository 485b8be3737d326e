"""What migration 008's wake-up trigger costs the transactions that enqueue jobs.

A transaction that notifies takes, at commit, a database-wide lock that PostgreSQL holds until
the commit is durable: notifying transactions never share a WAL flush, they commit one after
another.  This measures transactions per second that insert into ``background_jobs`` with the
trigger on and off (``ALTER TABLE … DISABLE TRIGGER`` on a throwaway database; nothing else
differs), ``--rounds`` times each, alternating, for two shapes:

- ``1 row x 20 connections``: one transaction per delivery, the ingest path before group
  commit (pool-sized concurrency);
- ``32 rows x 4 connections``: group commit, a few groups in flight.

    .venv/bin/python -m bench.notify_cost                     # 3 rounds x 4 s per cell, ~1 min
    .venv/bin/python -m bench.notify_cost --seconds 2 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time

import asyncpg

from bench import _common as c
from sql import connect
from sql.migrations import discover

SHAPES = ((1, 20), (32, 4))  # (rows per transaction, connections)
INSERT = """
INSERT INTO background_jobs (type, dedupe_key, run_at)
SELECT 'BENCH', $1 || '-' || i, now() FROM generate_series(1, $2) i
"""
TRIGGER = "background_jobs_due_on_insert"


async def transactions_per_s(conns: list[asyncpg.Connection], rows: int, seconds: float) -> float:
    stop = time.perf_counter() + seconds
    done = [0] * len(conns)

    async def loop(i: int, conn: asyncpg.Connection) -> None:
        while time.perf_counter() < stop:
            async with conn.transaction():
                await conn.execute(INSERT, f"{id(conn)}-{done[i]}", rows)
            done[i] += 1

    await asyncio.gather(*(loop(i, conn) for i, conn in enumerate(conns)))
    return sum(done) / seconds


async def measure(url: str, args: argparse.Namespace) -> list[list[object]]:
    db = await connect(url)
    await db.apply_migrations(discover(db.dialect))
    await db.close()
    table: list[list[object]] = []
    for rows, n in SHAPES:
        conns = [await asyncpg.connect(url) for _ in range(n)]
        try:
            found: dict[str, list[float]] = {"off": [], "on": []}
            for _ in range(args.rounds):
                for trigger in ("off", "on"):
                    verb = "ENABLE" if trigger == "on" else "DISABLE"
                    await conns[0].execute(f"ALTER TABLE background_jobs {verb} TRIGGER {TRIGGER}")
                    await conns[0].execute("TRUNCATE background_jobs")
                    found[trigger].append(await transactions_per_s(conns, rows, args.seconds))
        finally:
            for conn in conns:
                await conn.close()
        off, on = statistics.median(found["off"]), statistics.median(found["on"])
        table.append(
            [
                f"{rows} row{'s' if rows > 1 else ''} x {n} connections",
                " / ".join(f"{x:,.0f}" for x in found["off"]),
                " / ".join(f"{x:,.0f}" for x in found["on"]),
                f"{on / off:.2f}",
                f"{off * rows:,.0f} → {on * rows:,.0f}",
            ]
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.notify_cost", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="per cell, at most 30")
    parser.add_argument("--rounds", type=int, default=3, help="per cell, at most 10")
    args = parser.parse_args()
    if not (0 < args.seconds <= 30 and 0 < args.rounds <= 10):
        parser.error("--seconds must be in (0, 30] and --rounds in 1..10")
    c.print_header("The wake-up trigger's cost to enqueuing transactions (synchronous_commit on)")
    with c.pg_database("notify") as url:
        table = asyncio.run(measure(url, args))
    headers = [
        "shape", "tx/s, trigger off (each round)", "tx/s, trigger on", "ratio of medians",
        "job rows/s (medians)",
    ]  # fmt: skip
    print(c.table(headers, table))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
