"""Memory: the RSS of a live ``hookgate serve`` through 100,000 deliveries.

    .venv/bin/python -m bench.memory                                   # PostgreSQL, 100,000
    .venv/bin/python -m bench.memory --deliveries 20000 --every 2000   # a quick trial

A bounded async client (aiohttp, ``--connections`` workers, 64 by default) sends EmailBison
LEAD_REPLIED deliveries (``--dup-ratio`` of them repeats of a recent one, 0.5 by default) until
``--deliveries`` have been answered or ``--max-seconds`` have passed.  Every ``--every``
deliveries it reads ``VmRSS`` from ``/proc/<pid>/status``.  The verdict is the growth between
the sample nearest 50% of the deliveries and the last one.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time

import aiohttp

from bench import _common as c

TEMPLATE = (c.BENCH / "lead_replied.template.json").read_text()


async def drive(
    url: str, pid: int, args: argparse.Namespace
) -> tuple[list[tuple[int, int, float]], dict[int, int]]:
    samples: list[tuple[int, int, float]] = [(0, c.rss_kib(pid), 0.0)]
    statuses: dict[int, int] = {}
    state = {"issued": 0, "done": 0, "fresh": 0}
    recent: list[int] = []
    rng = random.Random(42)
    started = time.monotonic()
    deadline = started + args.max_seconds
    connector = aiohttp.TCPConnector(limit=args.connections)
    headers = {"Content-Type": "application/json"}

    def next_body() -> bytes:
        if recent and rng.random() < args.dup_ratio:
            reply_id = rng.choice(recent)
        else:
            state["fresh"] += 1
            reply_id = 10_000_000 + state["fresh"]
            recent.append(reply_id)
            if len(recent) > 256:
                recent.pop(0)
        text = TEMPLATE.replace("__REPLY_ID__", str(reply_id))
        return text.replace("__LEAD__", str(reply_id % 10_000)).encode()

    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while state["issued"] < args.deliveries and time.monotonic() < deadline:
                state["issued"] += 1
                async with session.post(url, data=next_body(), headers=headers) as answer:
                    await answer.read()
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1
                state["done"] += 1
                if state["done"] % args.every == 0:
                    samples.append((state["done"], c.rss_kib(pid), time.monotonic() - started))

        await asyncio.gather(*(worker() for _ in range(args.connections)))
    if samples[-1][0] != state["done"]:
        samples.append((state["done"], c.rss_kib(pid), time.monotonic() - started))
    return samples, statuses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=5_000, help="sample RSS every N deliveries")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--dup-ratio", type=float, default=0.5)
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop early after this")
    parser.add_argument(
        "--scheduler", choices=("on", "off"), default="on", help="HOOKGATE_SCHEDULER of the server"
    )
    parser.add_argument("--no-header", action="store_true")
    args = parser.parse_args(argv)
    if not args.no_header:
        c.print_header("Memory benchmark")
    with c.database(args.backend, "mem") as url:
        workspace = c.create_workspace(url)
        env = {"HOOKGATE_SCHEDULER": "1" if args.scheduler == "on" else "0"}
        with c.start_hookgate(url, env) as server:
            samples, statuses = asyncio.run(
                drive(server.base_url + workspace.emailbison_path, server.pid, args)
            )
            alive = server.proc.poll() is None
    done = samples[-1][0]
    print(
        f"### RSS of hookgate serve ({args.backend}, scheduler {args.scheduler}) "
        f"through {done:,} deliveries, "
        f"{args.connections} connections, {args.dup_ratio:.0%} duplicates\n"
    )
    rows = []
    for i, (n, kib, t) in enumerate(samples):
        prev_n, _, prev_t = samples[i - 1] if i else (0, 0, 0.0)
        interval = (n - prev_n) / (t - prev_t) if t > prev_t else 0.0
        rows.append((f"{n:,}", f"{kib / 1024:.1f}", f"{t:.0f}", f"{interval:,.0f}" if i else "-"))
    print(c.table(["deliveries", "RSS MiB", "elapsed s", "req/s since previous sample"], rows))
    print()
    print("answers: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(statuses.items())))
    half = min(samples, key=lambda s: abs(s[0] - done / 2))
    last = samples[-1]
    growth = (last[1] - half[1]) / 1024
    print(
        f"\nRSS growth from {half[0]:,} to {last[0]:,} deliveries: {growth:+.1f} MiB "
        f"({(last[1] - half[1]) / half[1]:+.1%}); first sample {samples[0][1] / 1024:.1f} MiB, "
        f"peak {max(s[1] for s in samples) / 1024:.1f} MiB"
    )
    if done < args.deliveries:
        print(f"WARNING: stopped at {done:,} of {args.deliveries:,} (--max-seconds)")
    if not alive:
        print("WARNING: the server died during the run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
