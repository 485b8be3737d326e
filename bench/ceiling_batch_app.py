"""The BATCHED CEILING for the ingest benchmark: ``bench/ceiling_app.py``'s two inserts, grouped.

The same work per delivery as the per-request ceiling (a message row in hookgate's ``messages``
with ``ON CONFLICT DO NOTHING`` and, for a new message, its job row in ``background_jobs``), but
the deliveries that arrive while a write is in flight are stored together: one transaction per
group, holding one ``INSERT … SELECT … FROM unnest($keys)`` for the messages and one for their
jobs, so a group costs BEGIN, two statements and one COMMIT whatever its size.  Each request
waits for its group's commit before it is answered (a 200 only after commit); copies of one key
inside a group give one row (``DO NOTHING`` skips the second); the other copies answer with
the group's ``message_id``, and a key stored by an earlier group answers ``message_id: null``
without a lookup, as the per-request ceiling does.  No added wait: a group is whatever queued
up while the previous one was being written, capped at ``BENCH_BATCH_MAX``.

Served like the other ceiling (``bench/_common.py``).  Environment: ``BENCH_DATABASE_URL``,
``BENCH_WORKSPACE_ID``, ``BENCH_POOL_SIZE`` (10), ``BENCH_BATCH_MAX`` (500), ``BENCH_WRITERS``
(groups written at once, 1 by default: while one group commits, the next one fills).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.ceiling_app import BODY, SUBJECT, UPSERT_LEAD, healthz

INSERT_MESSAGES = """
INSERT INTO messages (workspace_id, lead_id, channel, direction, provider, event, subject, body,
                      sent_at, interested, created_at, email_bison_reply_id)
SELECT $1, $2, 'email', 'inbound', 'emailbison', 'LEAD_REPLIED', $3, $4, $5, false, $5, k.key
FROM unnest($6::text[]) AS k(key)
ON CONFLICT DO NOTHING
RETURNING id, email_bison_reply_id
"""

INSERT_JOBS = """
INSERT INTO background_jobs (type, dedupe_key, workspace_id, message_id, payload, status, run_at,
                             attempts, max_attempts, created_at, updated_at)
SELECT 'EMAIL_INBOUND_POST_PROCESS', 'EMAIL_INBOUND_POST_PROCESS:' || m.id, $1, m.id,
       '{"event": "LEAD_REPLIED"}', 'pending', $2, 0, 5, $2, $2
FROM unnest($3::bigint[]) AS m(id)
ON CONFLICT (dedupe_key) DO NOTHING
"""

Waiter = tuple[str, "asyncio.Future[tuple[int | None, bool]]"]


class GroupWriter:
    """Queues deliveries and writes them in groups; at most ``writers`` groups in flight."""

    def __init__(self, pool: asyncpg.Pool, workspace_id: str, lead_id: int) -> None:
        self.pool = pool
        self.workspace_id = workspace_id
        self.lead_id = lead_id
        self.batch_max = int(os.environ.get("BENCH_BATCH_MAX", "500"))
        self.writers = int(os.environ.get("BENCH_WRITERS", "1"))
        self.queue: list[Waiter] = []
        self.in_flight = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def store(self, key: str) -> tuple[int | None, bool]:
        future: asyncio.Future[tuple[int | None, bool]] = asyncio.get_running_loop().create_future()
        self.queue.append((key, future))
        self._start()
        # Shielded: a client that goes away does not cancel its place in the group.
        return await asyncio.shield(future)

    def _start(self) -> None:
        while self.queue and self.in_flight < self.writers:
            group, self.queue = self.queue[: self.batch_max], self.queue[self.batch_max :]
            self.in_flight += 1
            task = asyncio.create_task(self._write(group))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _write(self, group: list[Waiter]) -> None:
        try:
            keys = list(dict.fromkeys(key for key, _ in group))
            now = dt.datetime.now(dt.UTC)
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    INSERT_MESSAGES, self.workspace_id, self.lead_id, SUBJECT, BODY, now, keys
                )
                new = {r["email_bison_reply_id"]: r["id"] for r in rows}
                if new:
                    await conn.execute(INSERT_JOBS, self.workspace_id, now, list(new.values()))
        except Exception as exc:
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self.in_flight -= 1
            self._start()
        first: set[str] = set()
        for key, future in group:
            if future.done():
                continue
            if key in new and key not in first:
                first.add(key)
                future.set_result((new[key], False))
            else:
                future.set_result((new.get(key), True))


_state: dict[str, GroupWriter] = {}


async def receive(request: Request) -> Response:
    await request.body()
    message_id, deduped = await _state["writer"].store(request.headers["x-bench-key"])
    return JSONResponse({"success": True, "deduped": deduped, "message_id": message_id})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(
        os.environ["BENCH_DATABASE_URL"],
        min_size=1,
        max_size=int(os.environ.get("BENCH_POOL_SIZE", "10")),
    )
    workspace_id = os.environ["BENCH_WORKSPACE_ID"]
    lead_id = await pool.fetchval(UPSERT_LEAD, workspace_id, "ceiling@bench.example.com")
    _state["writer"] = GroupWriter(pool, workspace_id, lead_id)
    try:
        yield
    finally:
        await pool.close()


app = Starlette(
    routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/webhooks/{provider}/{workspace_id}", receive, methods=["POST"]),
    ],
    lifespan=lifespan,
)
