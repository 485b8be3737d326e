"""The plans PostgreSQL keeps for the hot path's lookups (issue 15).

A statement the pool has prepared is planned once, generically, and that plan is kept until the
table is analyzed again.  On a fresh database it is planned while the tables are empty and have
never been analyzed; it must still be one probe per row on the looked-up key's own index once
the table holds thousands of rows.  Before migration 016 and the LATERAL lookups it was a hash
join over a scan of the whole table, or a probe on another key's index that matched only the
workspace and walked all of its rows.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from gateway.events import LEAD_IDENTITIES, MESSAGE_KEYS
from sql import connect, json_rows
from sql.migrations import discover
from sql.queries import get
from tests.conftest import empty_pg_database, insert_bare_workspace

GROWN_TO = 4000  # rows of each key once the plans are made


@pytest.fixture
async def fresh(pg_server_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A freshly migrated database, never analyzed, with one workspace; a connection to it
    that keeps generic plans from the first execution (as the pool's do after five)."""
    async with empty_pg_database(pg_server_url, "hg_plans") as url:
        db = await connect(url)
        await db.apply_migrations(discover("postgres"))
        await db.close()
        conn = await asyncpg.connect(url)
        try:
            await insert_bare_workspace(conn, "w")
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            yield conn
        finally:
            await conn.close()


async def prepare(conn: asyncpg.Connection, name: str) -> str:
    """PREPARE the named query (it takes one JSON parameter) and plan it now; returns the
    statement name."""
    query = get("postgres", name)
    assert len(query.params) == 1
    await conn.execute(f"PREPARE {name}(text) AS {query.positional_sql}")
    await conn.execute(f"EXPLAIN EXECUTE {name}('[]')")
    return name


async def grow(conn: asyncpg.Connection) -> None:
    """GROWN_TO leads of each identity and messages of each key, each message with a lead."""
    for key in LEAD_IDENTITIES:
        await conn.execute(
            f"INSERT INTO leads (workspace_id, {key}, created_at, updated_at)"
            f" SELECT 'w', '{key}-' || n, now(), now() FROM generate_series(1, {GROWN_TO}) n"
        )
    for key in MESSAGE_KEYS:
        await conn.execute(
            "INSERT INTO messages (workspace_id, lead_id, channel, direction, provider, event,"
            f" created_at, {key})"
            " SELECT 'w', (SELECT min(id) FROM leads) + n, 'email', 'inbound', 'emailbison',"
            f" 'LEAD_REPLIED', now(), '{key}-' || n FROM generate_series(1, {GROWN_TO}) n"
        )


async def plan_of(conn: asyncpg.Connection, statement: str, rows: list[Any]) -> dict[str, Any]:
    parameter = json_rows(rows).replace("'", "''")
    explained = await conn.fetchval(
        f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {statement}('{parameter}')"
    )
    return dict(json.loads(explained)[0]["Plan"])


def scans(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of the plan that reads a table."""
    if "Relation Name" in node:
        yield node
    for child in node.get("Plans", []):
        yield from scans(child)


def assert_probes(plan: dict[str, Any], table: str, index: str, probes: int) -> None:
    """The table is read only by one index scan of ``index``, once per row asked for, and
    reads no row it was not asked for."""
    reads = [node for node in scans(plan) if node["Relation Name"] == table]
    assert [(node["Node Type"], node.get("Index Name")) for node in reads] == [
        ("Index Scan", index)
    ], reads
    assert reads[0]["Actual Loops"] == probes
    assert reads[0].get("Rows Removed by Filter", 0) == 0


# (query, table, the index its probe must use, key column)
LOOKUPS = [
    *(
        (f"find_messages_by_{k}", "messages", f"messages_workspace_id_{k}_key", k)
        for k in MESSAGE_KEYS
    ),
    *(
        (f"find_leads_by_{k}", "leads", f"leads_workspace_id_{k}_key", k)
        for k in LEAD_IDENTITIES
        if k != "ghl_contact_id"
    ),
    ("find_leads_by_ghl_contact_id", "leads", "leads_ghl_contact", "ghl_contact_id"),
]


@pytest.mark.parametrize(("query", "table", "index", "key"), LOOKUPS)
async def test_a_key_lookup_planned_empty_probes_its_key_index(
    fresh: asyncpg.Connection, query: str, table: str, index: str, key: str
) -> None:
    statement = await prepare(fresh, query)
    await grow(fresh)
    wanted = [f"{key}-{n}" for n in (7, 1500, 3999)] + ["never-stored"]
    rows = [{"workspace_id": "w", "key_value": k, "job_type": "X"} for k in wanted]
    plan = await plan_of(fresh, statement, rows)
    assert plan["Actual Rows"] == 3
    assert_probes(plan, table, index, probes=len(rows))


async def test_a_post_process_load_planned_empty_probes_by_id(fresh: asyncpg.Connection) -> None:
    statement = await prepare(fresh, "post_process_messages")
    await grow(fresh)
    ids = [int(r["id"]) for r in await fresh.fetch("SELECT id FROM messages ORDER BY id LIMIT 5")]
    plan = await plan_of(fresh, statement, ids)
    assert plan["Actual Rows"] == 5
    assert_probes(plan, "messages", "messages_pkey", probes=5)
    assert_probes(plan, "leads", "leads_pkey", probes=5)
