"""The CEILING for the ingest benchmark: bare Starlette + asyncpg, no parsing, no auth.

Per request it does the least that still stores a delivery the way hookgate does: in one
transaction, the message insert (``ON CONFLICT DO NOTHING RETURNING id``) into hookgate's own
``messages`` table and, for a new message, the job insert into ``background_jobs``.  The
delivery's key comes from the ``X-Bench-Key`` header the load generator sets; the body is read
and dropped.  No lead upsert, no JSON parsing, no token check, no logging, no metrics: what
hookgate does on top of this is what the benchmark prices.

Served like hookgate (``bench/_common.py``): uvicorn, one worker, loop/http on ``auto``, no
access log.  Environment: ``BENCH_DATABASE_URL`` (a database migrated by hookgate),
``BENCH_WORKSPACE_ID`` (a workspace in it), ``BENCH_POOL_SIZE`` (default 10, hookgate's
``DATABASE_POOL_SIZE`` default), ``BENCH_POOL_RESET`` (default 1; 0 replaces asyncpg's reset
query on release, one round trip per request, with a no-op: the ``ceiling-pg-noreset`` target).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

INSERT_MESSAGE = """
INSERT INTO messages (workspace_id, lead_id, channel, direction, provider, event, subject, body,
                      sent_at, interested, created_at, email_bison_reply_id)
VALUES ($1, $2, 'email', 'inbound', 'emailbison', 'LEAD_REPLIED', $3, $4, $5, false, $5, $6)
ON CONFLICT DO NOTHING
RETURNING id
"""

INSERT_JOB = """
INSERT INTO background_jobs (type, dedupe_key, workspace_id, message_id, payload, status, run_at,
                             attempts, max_attempts, created_at, updated_at)
VALUES ('EMAIL_INBOUND_POST_PROCESS', $1, $2, $3, '{"event": "LEAD_REPLIED"}', 'pending', $4, 0,
        5, $4, $4)
ON CONFLICT (dedupe_key) DO NOTHING
"""

UPSERT_LEAD = """
INSERT INTO leads (workspace_id, email, created_at, updated_at) VALUES ($1, $2, now(), now())
ON CONFLICT (workspace_id, email) WHERE email IS NOT NULL
    DO UPDATE SET updated_at = excluded.updated_at
RETURNING id
"""

SUBJECT = "Re: Quick question about Northwind's hiring plans"
BODY = "Hi Sam,\nThanks for reaching out. Can you send over pricing?\nBest,\nJordan"

_state: dict[str, object] = {}


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def receive(request: Request) -> Response:
    await request.body()
    key = request.headers["x-bench-key"]
    pool: asyncpg.Pool = _state["pool"]
    workspace_id: str = _state["workspace_id"]  # type: ignore[assignment]
    now = dt.datetime.now(dt.UTC)
    async with pool.acquire() as conn, conn.transaction():
        message_id = await conn.fetchval(
            INSERT_MESSAGE, workspace_id, _state["lead_id"], SUBJECT, BODY, now, key
        )
        if message_id is not None:
            await conn.execute(
                INSERT_JOB,
                f"EMAIL_INBOUND_POST_PROCESS:{message_id}",
                workspace_id,
                message_id,
                now,
            )
    return JSONResponse({"success": True, "message_id": message_id})


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``."""


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(
        os.environ["BENCH_DATABASE_URL"],
        min_size=1,
        max_size=int(os.environ.get("BENCH_POOL_SIZE", "10")),
        reset=_no_reset if os.environ.get("BENCH_POOL_RESET", "1") == "0" else None,
    )
    workspace_id = os.environ["BENCH_WORKSPACE_ID"]
    _state["pool"] = pool
    _state["workspace_id"] = workspace_id
    _state["lead_id"] = await pool.fetchval(UPSERT_LEAD, workspace_id, "ceiling@bench.example.com")
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
