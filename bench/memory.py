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
import dataclasses
import random
import sys
import time

import aiohttp

from bench import _common as c

TEMPLATE = (c.BENCH / "lead_replied.template.json").read_text()
# RSS growth between the half-way sample and the last one below which the run counts as flat.
FLAT = 0.10


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


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    backend: str
    samples: list[tuple[int, int, float]]  # (deliveries answered, RSS KiB, elapsed s)
    statuses: dict[int, int]
    alive: bool

    @property
    def done(self) -> int:
        return self.samples[-1][0]

    @property
    def half(self) -> tuple[int, int, float]:
        return min(self.samples, key=lambda s: abs(s[0] - self.done / 2))

    @property
    def growth(self) -> float:
        """RSS growth from the sample nearest half the deliveries to the last one (a share)."""
        return (self.samples[-1][1] - self.half[1]) / self.half[1]


def measure(args: argparse.Namespace) -> Summary:
    """A fresh database and server, driven until ``args.deliveries`` are answered."""
    with c.database(args.backend, "mem") as url:
        workspace = c.create_workspace(url)
        env = {"HOOKGATE_SCHEDULER": "1" if args.scheduler == "on" else "0"}
        with c.start_hookgate(url, env) as server:
            samples, statuses = asyncio.run(
                drive(server.base_url + workspace.emailbison_path, server.pid, args)
            )
            alive = server.proc.poll() is None
    return Summary(args.backend, samples, statuses, alive)


def add_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The options of a memory run (``bench.ingest`` adds them with a ``memory-`` prefix)."""
    parser.add_argument(f"--{prefix}every", type=int, default=5_000, help="RSS sample interval")
    parser.add_argument(f"--{prefix}connections", type=int, default=64)
    parser.add_argument(f"--{prefix}dup-ratio", type=float, default=0.5)
    parser.add_argument(f"--{prefix}max-seconds", type=float, default=900.0, help="bound")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--deliveries", type=int, default=100_000)
    add_arguments(parser)
    parser.add_argument(
        "--scheduler", choices=("on", "off"), default="on", help="HOOKGATE_SCHEDULER of the server"
    )
    parser.add_argument("--no-header", action="store_true")
    args = parser.parse_args(argv)
    if not args.no_header:
        c.print_header("Memory benchmark")
    summary = measure(args)
    samples = summary.samples
    done = summary.done
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
    print("answers: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(summary.statuses.items())))
    half = summary.half
    last = samples[-1]
    print(
        f"\nRSS growth from {half[0]:,} to {last[0]:,} deliveries: "
        f"{(last[1] - half[1]) / 1024:+.1f} MiB ({summary.growth:+.1%}); first sample "
        f"{samples[0][1] / 1024:.1f} MiB, peak {max(s[1] for s in samples) / 1024:.1f} MiB"
    )
    if done < args.deliveries:
        print(f"WARNING: stopped at {done:,} of {args.deliveries:,} (--max-seconds)")
    if not summary.alive:
        print("WARNING: the server died during the run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
