"""The NAIVE webhook handler hookgate replaces.  Bench only: never part of the product.

What a first version of a webhook endpoint usually looks like: parse the body, look the message
up, insert it if absent (check-then-create, a plain ``INSERT``), then run the slow step inline
(``asyncio.sleep(NAIVE_SLOW_S)`` standing in for enrichment, sentiment, an AI draft and a Slack
post) before answering.  The connection goes back to the pool before the slow step, which is
the kinder version of this pattern.

``BENCH_NAIVE_UNIQUE=1`` (the default, as in real life) gives ``naive_messages.reply_id`` a
UNIQUE constraint: concurrent copies of one delivery then all pass the lookup, one insert wins
and the others raise ``UniqueViolationError``, which nothing catches, so Starlette answers 500
(and the provider retries).  ``BENCH_NAIVE_UNIQUE=0`` drops the constraint: every copy that
passed the lookup stores its own row and runs the slow step.

``GET /stats`` reports how many times the slow step ran.  Environment: ``BENCH_DATABASE_URL``,
``BENCH_NAIVE_UNIQUE``, ``BENCH_NAIVE_SLOW_S`` (default 0.2), ``BENCH_POOL_SIZE`` (default 10).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SCHEMA = """
CREATE TABLE IF NOT EXISTS naive_messages (
    id          bigserial PRIMARY KEY,
    reply_id    text NOT NULL {unique},
    lead_email  text,
    subject     text,
    body        text,
    created_at  timestamptz NOT NULL DEFAULT now()
)
"""

_state: dict[str, object] = {"slow_runs": 0}


async def enrich(message_id: int) -> None:
    """The slow step, inline: enrichment, sentiment, a draft, a Slack post."""
    await asyncio.sleep(float(os.environ.get("BENCH_NAIVE_SLOW_S", "0.2")))
    _state["slow_runs"] = int(_state["slow_runs"]) + 1  # type: ignore[call-overload]


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def stats(request: Request) -> Response:
    return JSONResponse({"slow_runs": _state["slow_runs"]})


async def receive(request: Request) -> Response:
    payload = json.loads(await request.body())
    reply = payload["data"]["reply"]
    reply_id = str(reply["id"])
    pool: asyncpg.Pool = _state["pool"]
    async with pool.acquire() as conn:
        existing = await conn.fetchval(
            "SELECT id FROM naive_messages WHERE reply_id = $1", reply_id
        )
        if existing is not None:
            return JSONResponse({"success": True, "duplicate": True, "message_id": existing})
        message_id = await conn.fetchval(
            "INSERT INTO naive_messages (reply_id, lead_email, subject, body, created_at)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            reply_id,
            payload["data"]["lead"]["email"],
            reply.get("email_subject"),
            reply.get("text_body"),
            dt.datetime.now(dt.UTC),
        )
    await enrich(message_id)
    return JSONResponse({"success": True, "message_id": message_id})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(
        os.environ["BENCH_DATABASE_URL"],
        min_size=1,
        max_size=int(os.environ.get("BENCH_POOL_SIZE", "10")),
    )
    unique = os.environ.get("BENCH_NAIVE_UNIQUE", "1") == "1"
    await pool.execute(SCHEMA.format(unique="UNIQUE" if unique else ""))
    _state["pool"] = pool
    try:
        yield
    finally:
        await pool.close()


app = Starlette(
    routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/webhooks/{provider}/{workspace_id}", receive, methods=["POST"]),
    ],
    lifespan=lifespan,
)
