"""A seeded randomized fault test: two ``hookgate serve`` replicas and one ``hookgate worker`` on
PostgreSQL, each through a TCP proxy of its own, take a few hundred EmailBison deliveries (copies
sent at once to both replicas, ``LEAD_INTERESTED`` before and after its ``LEAD_REPLIED``, sends and
the echoes of drafts sent through ``POST /api/drafts/{id}/send``) while the database is cut away
from one process at a time for longer than the job lease, the worker is killed with ``kill -9``
and started again, and one replica's clock runs 30 s ahead (libfaketime).  The AI is slow; Slack
sometimes answers after the client's timeout, answers 500, drops the connection or rate-limits;
the Unipile health cron reports accounts disconnected.

When everything has settled, the invariants (each violation is listed, with the seed):

1. every delivery answered 200 is stored exactly once per identity key (and every unreadable one
   answered 202 is kept once in the quarantine); every draft pressed has one message;
2. every inbound message has exactly one post-process job, ended ``succeeded`` (or ``dead`` with
   a readable ``last_error``);
3. no job ever had two handlers at once, as the fakes saw it: at most one request in flight per
   message token at the AI and at Slack, per draft at EmailBison, and at most one send per draft;
4. at most one Slack post that may have gone out per (workspace, kind, day) of integration and
   quarantine alerts; one whose outcome was unknown is recorded ``unknown``, never ``sent``;
5. every interested lead's message notified once (``sent``, one post) or recorded ``unknown``
   (at most one post); no other message notified.

And, looked for while the plan runs: no job is due by another clock than the database's (one
never tried is due at once; due 30 s later, it waits for the skewed replica's clock).

The plan is a pure function of the seed (``tests/fault_plan.py``); the seed is printed, and
``HOOKGATE_FAULT_SEED=<seed> pytest -m fault tests/test_fault_random.py`` replays it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import functools
import itertools
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from gateway.workspaces import CreatedWorkspace, WorkspaceOptions, create_workspace
from sql import connect
from tests.conftest import ROOT
from tests.fault_invariants import check
from tests.fault_plan import (
    LEASE_S,
    PROCESSES,
    SEED_ENV,
    SKEW_S,
    SKEWED,
    WORKSPACES,
    Plan,
    make_plan,
)
from tests.fault_support import ADMIN_TOKEN, Fakes, Process, Provider, running, skewed_env
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.fault

SETTLE_S = 100.0  # the most the jobs, sends and alerts may take to settle after the last fault
LOOK_EVERY_S = 0.5
MAX_LISTED = 40


def the_seed() -> int:
    raw = os.environ.get(SEED_ENV)
    return int(raw) if raw else secrets.randbelow(1_000_000)


async def create_workspaces(database_url: str, fakes: Fakes) -> list[CreatedWorkspace]:
    db = await connect(database_url)
    try:
        return [
            await create_workspace(
                db,
                f"Fault WS {i}",
                WorkspaceOptions(
                    slack_channel="#fault",
                    unipile_account_id=f"acc-fault-{i}",
                    emailbison_api_key="eb-fault-key",
                    emailbison_base_url=fakes.emailbison.url,
                ),
            )
            for i in range(WORKSPACES)
        ]
    finally:
        await db.close()


def make_processes(database_url: str, fakes: Fakes, logs: Path) -> dict[str, Process]:
    target = urlsplit(database_url)
    common = {
        **fakes.env(),
        "LOG_LEVEL": "WARNING",
        "HOOKGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "DATABASE_POOL_SIZE": "8",
        "DATABASE_TIMEOUT_S": "3",
        "JOB_CONCURRENCY": "5",
        "JOB_LEASE_S": str(LEASE_S),
        "JOB_POLL_INTERVAL_MS": "200",
        "HOOKGATE_SHUTDOWN_GRACE_S": "3",
        "AI_TIMEOUT_MS": "10000",
        "EMAILBISON_TIMEOUT_MS": "3000",
        "UNIPILE_HEALTH_INTERVAL_S": "3",
        "ALERTS_SEND_INTERVAL_S": "2",
        "ALERT_CLAIM_STALE_S": "5",
    }
    processes = {}
    for name in PROCESSES:
        proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
        env = {**common, "DATABASE_URL": proxy.url(database_url)}
        if name == SKEWED:
            env |= skewed_env(SKEW_S)
        command = "worker" if name == "worker" else "serve"
        processes[name] = Process(name, command, env, proxy, logs / f"{name}.log")
    return processes


class Watch:
    """What the test does while the plan runs and settles: presses send, as the plan says, on
    each draft once it exists; and looks for jobs due by another clock than the database's (a
    job never tried is due at once: one due later waits for a replica's clock)."""

    def __init__(self, plan: Plan, provider: Provider, conn: asyncpg.Connection) -> None:
        self.plan = plan
        self.provider = provider
        self.conn = conn
        self.seen: set[int] = set()
        self.pressing: set[asyncio.Task[None]] = set()
        self.due_ahead: dict[str, float] = {}  # "job <id> (<type>)" -> seconds ahead, at most

    async def look(self) -> None:
        drafts = await self.conn.fetch(
            "SELECT d.id, m.email_bison_reply_id FROM ai_drafts d "
            "JOIN messages m ON m.id = d.message_id"
        )
        for draft in drafts:
            if draft["id"] in self.seen:
                continue
            self.seen.add(draft["id"])
            reply = self.plan.by_reply_id(draft["email_bison_reply_id"])
            if reply.press:
                task = asyncio.create_task(self.provider.press(draft["id"], reply.press))
                self.pressing.add(task)
                task.add_done_callback(self.pressing.discard)
        ahead = await self.conn.fetch(
            "SELECT id, type, EXTRACT(EPOCH FROM run_at - now()) AS ahead_s FROM background_jobs "
            "WHERE status = 'pending' AND attempts = 0 AND run_at > now() + interval '1 second'"
        )
        for job in ahead:
            what = f"job {job['id']} ({job['type']})"
            self.due_ahead[what] = max(self.due_ahead.get(what, 0.0), float(job["ahead_s"]))

    async def keep_looking(self) -> None:
        while True:
            await self.look()
            await asyncio.sleep(LOOK_EVERY_S)


async def run_plan(plan: Plan, processes: dict[str, Process], provider: Provider) -> None:
    """Every delivery and every fault at its moment; returns when the last has ended."""
    start = time.monotonic()
    worker = processes["worker"]

    async def at(offset: float, action: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(max(0.0, start + offset - time.monotonic()))
        await action()

    await asyncio.gather(
        *(at(post.at, functools.partial(provider.deliver, post)) for post in plan.posts),
        *(at(c.at, functools.partial(processes[c.process].cut, c.seconds)) for c in plan.cuts),
        *(at(k.at, functools.partial(worker.kill_and_restart, k.down_s)) for k in plan.kills),
    )


async def settle(conn: asyncpg.Connection, watch: Watch, fakes: Fakes) -> str | None:
    """Wait (bounded) until no job is pending or running, every planned press and echo was
    made, and no alert claim awaits its verdict; what is still busy if that never came."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        await watch.look()
        busy = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM background_jobs WHERE status IN ('pending', 'running')) "
            "AS jobs, (SELECT count(*) FROM alerts WHERE outcome IS NULL "
            "AND claimed_at IS NOT NULL) AS alert_claims"
        )
        waiting = {
            **dict(busy),
            "presses": len(watch.pressing),
            "echoes": fakes.echoes_pending,
        }
        if not any(waiting.values()):
            return None
        if time.monotonic() > deadline:
            return f"not settled {SETTLE_S:g} s after the last fault: {waiting}"
        await asyncio.sleep(0.5)


def plan_digest(seed: int, hash_seed: str) -> str:
    """A digest of the plan of ``seed`` as a fresh interpreter with ``PYTHONHASHSEED=hash_seed``
    makes it."""
    code = (
        "import hashlib, sys; from tests.fault_plan import make_plan; "
        "print(hashlib.sha256(repr(make_plan(int(sys.argv[1]))).encode()).hexdigest())"
    )
    made = subprocess.run(
        [sys.executable, "-c", code, str(seed)],
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip()


def test_the_plan_is_a_function_of_its_seed() -> None:
    """A seed replays: the same plan in another process (another hash seed), another plan for
    another seed; and the plan's cuts each outlast the lease, one process at a time."""
    assert plan_digest(7, "1") == plan_digest(7, "2") != plan_digest(8, "1")
    cuts = make_plan(7).cuts
    assert all(cut.seconds > LEASE_S for cut in cuts)
    assert all(a.at + a.seconds < b.at for a, b in itertools.pairwise(cuts))


async def clock_ahead_s(http: aiohttp.ClientSession, process: Process) -> float:
    """How far ahead of this test's clock the process's clock is (its HTTP ``Date``)."""
    async with http.get(f"{process.base_url}/healthz") as answer:
        served = email.utils.parsedate_to_datetime(answer.headers["Date"])
    return (served - dt.datetime.now(dt.UTC)).total_seconds()


async def test_random_faults_keep_every_promise(postgres_url: str, tmp_path: Path) -> None:
    seed = the_seed()
    replay = f"{SEED_ENV}={seed} pytest -m fault tests/test_fault_random.py"
    print(f"\nfault seed {seed}; replay: {replay}; process logs in {tmp_path}")
    plan = make_plan(seed)
    async with contextlib.AsyncExitStack() as stack:
        conn = await asyncpg.connect(postgres_url)
        stack.push_async_callback(conn.close)
        http = await stack.enter_async_context(
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        )
        fakes = await stack.enter_async_context(Fakes(plan))
        fakes.workspaces = await create_workspaces(postgres_url, fakes)
        processes = make_processes(postgres_url, fakes, tmp_path)
        replicas = [processes[name] for name in PROCESSES if name != "worker"]
        provider = fakes.provider = Provider(http, replicas, fakes.workspaces)
        watch = Watch(plan, provider, conn)
        async with running(processes.values()):
            for replica in replicas:  # the skew is real: the process's own clock says so
                ahead = await clock_ahead_s(http, replica)
                expected = SKEW_S if replica.name == SKEWED else 0
                assert abs(ahead - expected) < 3, f"{replica.name}'s clock is {ahead:+.0f} s"
            began = time.monotonic()
            looking = asyncio.create_task(watch.keep_looking())
            try:
                await run_plan(plan, processes, provider)
            finally:
                looking.cancel()  # the settling goes on looking, on the same connection
                await asyncio.gather(looking, return_exceptions=True)
            faults_over = time.monotonic()
            unsettled = await settle(conn, watch, fakes)
            settled = time.monotonic()
        problems, figures = await check(plan, provider, fakes, conn)
    problems += [
        f"{job} was due {s:.0f} s ahead of the database's clock"
        for job, s in watch.due_ahead.items()
    ]
    if unsettled is not None:
        problems.insert(0, unsettled)
    figures["worker kills"] = processes["worker"].kills
    figures["exits by themselves"] = {p.name: p.exits for p in processes.values() if p.exits}
    figures["cuts"] = [f"{c.process} {c.seconds:.1f} s" for c in plan.cuts]
    print(
        f"fault seed {seed}: faults over after {faults_over - began:.0f} s, settled "
        f"{settled - faults_over:.0f} s later; {figures}"
    )
    assert not problems, (
        f"fault seed {seed}: {len(problems)} violations (replay: {replay}; logs: {tmp_path}):\n"
        + "\n".join(problems[:MAX_LISTED])
    )
