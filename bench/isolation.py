"""Isolation: webhook ack latency of a live ``hookgate serve`` while its jobs are stuck.

Two runs, each on a fresh PostgreSQL database and a fresh ``hookgate serve`` (scheduler on,
``JOB_CONCURRENCY`` and the pool at their defaults), with a workspace that has a Slack channel
(so every interested reply's job tries Slack):

- ``fast-fakes``: OpenAI (``OPENAI_BASE_URL``) is an aiohttp fake in this process that answers
  at once (sentiment ``interested``, so a draft follows), Slack (``SLACK_API_URL``) a fake that
  answers ``ok``.  Every delivery's post-process job runs to the end.
- ``stuck-ai``: the same OpenAI fake takes ``--ai-delay`` (30 s) per call, with
  ``AI_TIMEOUT_MS`` above that so the calls really hang, and Slack points at a closed port.
  Every job slot is held by a hanging model call; the backlog grows.

Load: an open-loop aiohttp client sends unique EmailBison ``LEAD_REPLIED`` deliveries at a
fixed ``--rate`` per second (each request starts on its schedule, whatever the earlier ones
are doing, and its latency is counted from its scheduled time, so a stalled server cannot hide
behind a waiting client): ``--warmup`` seconds (which fill the job slots in the stuck run), then
``--duration`` measured seconds.  Reported: ack p50/p90/p99/max, non-2xx, the server's CPU per
request, the jobs by status and the model calls the fake saw; then stuck p99 / fast p99
against issue 9's target (within 10%).

    .venv/bin/python -m bench.isolation                       # 2 x (5 s warm-up + 20 s)
    .venv/bin/python -m bench.isolation --duration 5 --warmup 2   # trial
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import threading
import time
from typing import Any

import aiohttp
from aiohttp import web

from bench import _common as c

TEMPLATE = (c.BENCH / "lead_replied.template.json").read_text()
TARGET_P99_RATIO = 1.10
SLACK_CHANNEL = "C0BENCH"


class Fakes:
    """OpenAI and Slack on one aiohttp server of 127.0.0.1, counting what they were asked."""

    def __init__(self, ai_delay_s: float) -> None:
        self.ai_delay_s = ai_delay_s
        self.ai_calls = 0
        self.ai_in_flight = 0
        self.ai_max_in_flight = 0
        self.slack_posts = 0
        self.port = c.free_port()
        self._runner: web.AppRunner | None = None

    async def _chat(self, request: web.Request) -> web.Response:
        self.ai_calls += 1
        self.ai_in_flight += 1
        self.ai_max_in_flight = max(self.ai_max_in_flight, self.ai_in_flight)
        try:
            await request.read()
            if self.ai_delay_s:
                await asyncio.sleep(self.ai_delay_s)
        finally:
            self.ai_in_flight -= 1
        return web.json_response(
            {
                "id": f"chatcmpl-bench{self.ai_calls}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "interested"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 50, "completion_tokens": 1, "total_tokens": 51},
            }
        )

    async def _slack(self, request: web.Request) -> web.Response:
        self.slack_posts += 1
        await request.read()
        return web.json_response({"ok": True, "channel": SLACK_CHANNEL, "ts": "1.000001"})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/api/chat.postMessage", self._slack)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, c.HOST, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclasses.dataclass(slots=True)
class Result:
    run: str
    requests: int
    latencies_ms: list[float]
    non_2xx: int
    errors: int
    cpu_us_per_req: float
    jobs: dict[str, int]
    ai_calls: int
    ai_max_in_flight: int
    slack_posts: int
    problems: list[str]

    def pct(self, q: float) -> float:
        return c.percentile(sorted(self.latencies_ms), q)


async def send_load(
    *, base_url: str, path: str, rate: float, seconds: float, first_id: int
) -> tuple[list[float], int, int]:
    """Open loop: request i starts at t0 + i/rate; latency from that scheduled time."""
    latencies: list[float] = []
    counts = {"non_2xx": 0, "errors": 0}
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:

        async def one(i: int, scheduled: float) -> None:
            reply_id = first_id + i
            body = TEMPLATE.replace("__REPLY_ID__", str(reply_id)).replace(
                "__LEAD__", str(reply_id % 10_000)
            )
            try:
                async with session.post(
                    path, data=body, headers={"Content-Type": "application/json"}
                ) as answer:
                    await answer.read()
                    if not 200 <= answer.status < 300:
                        counts["non_2xx"] += 1
            except (aiohttp.ClientError, TimeoutError):
                counts["errors"] += 1
                return
            latencies.append((time.perf_counter() - scheduled) * 1000)

        tasks: list[asyncio.Task[None]] = []
        t0 = time.perf_counter() + 0.05
        total = int(rate * seconds)
        for i in range(total):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
    return latencies, counts["non_2xx"], counts["errors"]


class FakesThread:
    """The fakes on their own event loop in a thread, so they answer while this thread does
    blocking work (creating databases, starting and stopping the server)."""

    def __init__(self, fakes: Fakes) -> None:
        self.fakes = fakes
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Fakes:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.fakes.start(), self.loop).result(timeout=10)
        return self.fakes

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.fakes.stop(), self.loop).result(timeout=10)
        asyncio.run_coroutine_threadsafe(_cancel_others(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


async def _cancel_others() -> None:
    """Cancel what the fakes still have pending (model calls hanging in the stuck run)."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


def measure(run: str, args: argparse.Namespace) -> Result:
    stuck = run == "stuck-ai"
    extra = {"HOOKGATE_SCHEDULER": "0"} if run == "ingest-only" else {}
    with FakesThread(Fakes(args.ai_delay if stuck else 0.0)) as fakes:
        slack_url = f"http://{c.HOST}:{c.free_port() if stuck else fakes.port}/api/"
        env = {
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": f"http://{c.HOST}:{fakes.port}/v1",
            "AI_TIMEOUT_MS": str(int((args.ai_delay + 30) * 1000)),
            "SLACK_BOT_TOKEN": "xoxb-bench",
            "SLACK_API_URL": slack_url,
            "HOOKGATE_SHUTDOWN_GRACE_S": "1",
            "LOG_LEVEL": "WARNING",
            **extra,
        }
        with c.pg_database("iso") as url:
            workspace = c.create_workspace(url)
            c.db_fetch(
                url,
                f"UPDATE workspaces SET slack_channel = '{SLACK_CHANNEL}' "
                f"WHERE id = '{workspace.id}' RETURNING id",
            )
            with c.start_hookgate(url, env) as server:
                load = {"rate": args.rate, "base_url": server.base_url}
                if args.warmup > 0:
                    asyncio.run(
                        send_load(
                            path=workspace.emailbison_path, seconds=args.warmup, first_id=1, **load
                        )
                    )
                cpu_before = c.cpu_seconds(server.pid)
                latencies, non_2xx, errors = asyncio.run(
                    send_load(
                        path=workspace.emailbison_path,
                        seconds=args.duration,
                        first_id=1_000_000,
                        **load,
                    )
                )
                cpu = c.cpu_seconds(server.pid) - cpu_before
                if server.proc.poll() is not None:
                    raise RuntimeError(f"hookgate died during {run}: {server.tail()}")
                rows = c.db_fetch(
                    url, "SELECT status, count(*) AS n FROM background_jobs GROUP BY status"
                )
                ai_rows = c.db_fetch(url, "SELECT count(*) AS n FROM ai_interactions")
                problems = server.problems()
        requests = int(args.rate * args.duration)
        return Result(
            run=run,
            requests=requests,
            latencies_ms=latencies,
            non_2xx=non_2xx,
            errors=errors,
            cpu_us_per_req=cpu / max(requests, 1) * 1e6,
            jobs={str(r["status"]): int(r["n"]) for r in rows},
            ai_calls=fakes.ai_calls,
            ai_max_in_flight=fakes.ai_max_in_flight,
            slack_posts=fakes.slack_posts,
            problems=[*problems, f"ai_interactions rows: {ai_rows[0]['n']}"],
        )


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"### Isolation: {args.rate:g} deliveries/s open loop, {args.warmup:g} s warm-up + "
        f"{args.duration:g} s measured, PostgreSQL, scheduler on, JOB_CONCURRENCY default\n"
    )
    rows: list[list[Any]] = []
    for r in results:
        jobs = ", ".join(f"{k} {v:,}" for k, v in sorted(r.jobs.items()))
        rows.append(
            [
                r.run,
                f"{r.requests:,}",
                f"{r.pct(50):.1f}",
                f"{r.pct(90):.1f}",
                f"{r.pct(99):.1f}",
                f"{max(r.latencies_ms, default=float('nan')):.1f}",
                r.non_2xx,
                r.errors,
                f"{r.cpu_us_per_req:,.0f}",
                jobs,
                f"{r.ai_calls:,} (max {r.ai_max_in_flight} at once)",
                r.slack_posts,
            ]
        )
    headers = [
        "run", "requests", "ack p50 ms", "p90 ms", "p99 ms", "max ms", "non-2xx", "errors",
        "server CPU µs/req", "jobs at the end", "model calls seen", "Slack posts",
    ]  # fmt: skip
    print(c.table(headers, rows))
    print()
    by_run = {r.run: r for r in results}
    if {"fast-fakes", "stuck-ai"} <= by_run.keys():
        fast, stuck = by_run["fast-fakes"], by_run["stuck-ai"]
        ratio = stuck.pct(99) / fast.pct(99)
        verdict = "met" if ratio <= TARGET_P99_RATIO else "MISSED"
        print(
            f"Target: stuck-AI ack p99 within 10% of the fast-fake run: "
            f"{stuck.pct(99):.1f} / {fast.pct(99):.1f} ms = {ratio:.2f}x "
            f"(p50 {stuck.pct(50) / fast.pct(50):.2f}x): **{verdict}**\n"
        )
    for r in results:
        for line in r.problems:
            print(f"    {r.run} server log: {line}")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.isolation", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rate", type=float, default=50.0, help="deliveries per second")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="warm-up seconds")
    parser.add_argument("--ai-delay", type=float, default=30.0, help="stuck model call, seconds")
    parser.add_argument(
        "--runs",
        default="fast-fakes,stuck-ai,ingest-only",
        help="from fast-fakes, stuck-ai, ingest-only (HOOKGATE_SCHEDULER=0: no jobs run)",
    )
    args = parser.parse_args()
    if not 0 < args.rate <= 1000 or not 0 < args.duration <= 300:
        parser.error("--rate must be in (0, 1000] and --duration in (0, 300]")
    c.print_header("Isolation: ack latency with stuck AI")
    results = [measure(run, args) for run in args.runs.split(",") if run]
    report(results, args)


if __name__ == "__main__":
    main()
