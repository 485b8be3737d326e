"""CPU per delivery of hookgate's request path, in one process: route → parse → statements.

    .venv/bin/python -m bench.path_cost                          # both backends, both mixes
    .venv/bin/python -m bench.path_cost --backends sqlite --deliveries 2000   # a trial
    .venv/bin/python -m bench.path_cost --no-delivery-stats      # what delivery_stats costs

No socket, no uvicorn, no load generator: the app (``gateway.app.create_app``, its lifespan
run, ``HOOKGATE_SCHEDULER=0``) is called as ASGI directly, ``--concurrency`` deliveries in
flight, on a fresh database.  After ``--warmup`` deliveries, ``--deliveries`` more are timed
by the CPU they cost: this process's (``time.process_time``, every thread, so aiosqlite's too)
plus, on PostgreSQL, the backends of its database (``/proc/<pid>/stat``).  Nothing else shares
the process, so the figure moves far less with a busy machine than ``bench.ingest``'s: it is
the one to compare before and after a change to the Python path (``--rounds`` alternations,
each on a fresh database; see bench/README.md for running another commit's code).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.parse
from typing import Any

import uvloop

from bench import _common as c

TEMPLATE = (c.BENCH / "lead_replied.template.json").read_text()


def _bodies(count: int, dup_ratio: float, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    recent: list[int] = []
    fresh = 0
    bodies = []
    for _ in range(count):
        if recent and rng.random() < dup_ratio:
            reply_id = rng.choice(recent)
        else:
            fresh += 1
            reply_id = seed * 10_000_000 + fresh
            recent = [*recent[-255:], reply_id]
        text = TEMPLATE.replace("__REPLY_ID__", str(reply_id))
        bodies.append(text.replace("__LEAD__", str(reply_id % 10_000)).encode())
    return bodies


async def _drive(app: Any, path: str, query: bytes, bodies: list[bytes], concurrency: int) -> int:
    """Each body POSTed once through the ASGI app; returns the number answered 2xx."""
    ok = 0
    queue = list(reversed(bodies))

    async def one(body: bytes) -> None:
        nonlocal ok
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": (c.HOST, 40000),
            "server": (c.HOST, 8000),
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # never called: the route reads the body once
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            nonlocal ok
            if message["type"] == "http.response.start" and 200 <= message["status"] < 300:
                ok += 1

        await app(scope, receive, send)

    async def worker() -> None:
        while queue:
            await one(queue.pop())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


async def _backend_pids(url: str) -> list[int]:
    rows = await c.pg_fetch(
        url,
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    return [int(r["pid"]) for r in rows]


async def _measure(url: str, args: argparse.Namespace, dup_ratio: float, seed: int) -> float:
    from gateway import logs
    from gateway.app import create_app
    from gateway.settings import Settings

    workspace = c.create_workspace(url)
    split = urllib.parse.urlsplit(workspace.emailbison_path)
    path, query = split.path, split.query.encode()
    settings = Settings.from_env({**os.environ, "DATABASE_URL": url, "HOOKGATE_SCHEDULER": "0"})
    app = create_app(settings)
    # Logging as ``hookgate`` sets it up, into a file: its lines are part of the cost.
    with tempfile.TemporaryFile("w") as log_file, contextlib.redirect_stderr(log_file):
        logs.configure(settings.log_level)
        async with app.router.lifespan_context(app):
            await _drive(app, path, query, _bodies(args.warmup, dup_ratio, seed + 500), 16)
            postgres = url.startswith("postgres")
            bodies = _bodies(args.deliveries, dup_ratio, seed)
            db_before = c.cpu_by_pid(await _backend_pids(url)) if postgres else {}
            before = time.process_time()
            ok = await _drive(app, path, query, bodies, args.concurrency)
            spent = time.process_time() - before
            if postgres:
                db_after = c.cpu_by_pid([*db_before, *await _backend_pids(url)])
                spent += c.cpu_spent(db_before, db_after)
    if ok != len(bodies):
        raise RuntimeError(f"{len(bodies) - ok} of {len(bodies)} deliveries not answered 2xx")
    return spent / ok * 1e6


def _switch_off_delivery_stats() -> None:
    from gateway.delivery_stats import DeliveryStats, Pending

    def record(*args: Any, **kwargs: Any) -> None:
        return None

    async def write(*args: Any) -> Pending:
        return Pending()

    DeliveryStats.record = record  # type: ignore[method-assign]
    DeliveryStats.write = write  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.path_cost", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--mixes", default="unique,dup50")
    parser.add_argument("--deliveries", type=int, default=5_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="fresh databases per cell")
    parser.add_argument(
        "--no-delivery-stats",
        action="store_true",
        help="record and write no delivery stats (what the console's per-minute figures cost)",
    )
    args = parser.parse_args(argv)
    if args.no_delivery_stats:
        _switch_off_delivery_stats()
    rows = []
    for backend in args.backends.split(","):
        for mix in args.mixes.split(","):
            figures = []
            for round_no in range(args.rounds):
                with c.database(backend, "path") as url:
                    dup = 0.5 if mix == "dup50" else 0.0
                    # uvloop, as ``hookgate serve`` runs (uvicorn's loop "auto").
                    figures.append(uvloop.run(_measure(url, args, dup, 1 + round_no)))
            rows.append(
                (
                    backend,
                    mix,
                    f"{args.deliveries:,} x {args.rounds}",
                    " / ".join(f"{f:,.0f}" for f in figures),
                    f"{statistics.median(figures):,.0f}",
                )
            )
    print(
        f"### CPU per delivery of the request path, in process (ASGI, no socket), "
        f"{args.concurrency} in flight\n"
    )
    headers = ["backend", "mix", "deliveries x rounds", "µs/delivery each", "median µs/delivery"]
    print(c.table(headers, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
