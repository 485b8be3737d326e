"""pgbouncer in transaction mode in front of PostgreSQL, with DATABASE_PGBOUNCER=1: migrations
(also two at once), the ingest storm and the job run all work."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx2
import pytest

from gateway.workspaces import WorkspaceOptions, create_workspace
from sql import connect
from tests.conftest import (
    count,
    empty_pg_database,
    fixture_bytes,
    fixture_json,
    migrate_in_processes,
    start_server,
    stop_server,
)
from tests.pgbouncer import PgBouncer

pytestmark = pytest.mark.fault


@pytest.fixture
async def fresh_pg(pg_server_url: str) -> AsyncIterator[str]:
    async with empty_pg_database(pg_server_url, "hg_bouncer") as url:
        yield url


async def test_everything_works_behind_pgbouncer_in_transaction_mode(
    bouncer: PgBouncer, fresh_pg: str
) -> None:
    url = bouncer.url(fresh_pg)
    for status, _, err in await migrate_in_processes(2, DATABASE_URL=url, DATABASE_PGBOUNCER="1"):
        assert status == 0, err

    db = await connect(url, pgbouncer=True)
    workspace = await create_workspace(db, "Acme", WorkspaceOptions())
    await db.close()

    server = start_server({"DATABASE_URL": url, "DATABASE_PGBOUNCER": "1"})
    try:
        hook = f"{server.base_url}/webhooks/emailbison/{workspace.id}"
        params = {"token": workspace.tokens["emailbison"]}

        def distinct(i: int) -> bytes:
            payload = fixture_json("emailbison/lead_replied.json")
            payload["data"]["reply"]["id"] = 9000 + i
            return json.dumps(payload).encode()

        same = fixture_bytes("emailbison/lead_replied.json")
        async with httpx2.AsyncClient(
            limits=httpx2.Limits(max_connections=100), timeout=30
        ) as http:
            identical = await asyncio.gather(
                *(http.post(hook, params=params, content=same) for _ in range(100))
            )
            different = await asyncio.gather(
                *(http.post(hook, params=params, content=distinct(i)) for i in range(100))
            )
        assert [a.status_code for a in identical + different] == [200] * 200
        assert sum(a.json()["deduped"] for a in identical) == 99
        assert await count(fresh_pg, "messages") == 101

        for _ in range(600):  # the in-process scheduler runs every job; bounded at 60 s
            if await count(fresh_pg, "background_jobs", "status = 'succeeded'") == 101:
                break
            await asyncio.sleep(0.1)
        assert await count(fresh_pg, "background_jobs", "status = 'succeeded'") == 101
    finally:
        stop_server(server)
