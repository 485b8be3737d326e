"""Migrations: applied in order, each exactly once, also when two processes start together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gateway.events import MESSAGE_KEYS
from sql import connect
from sql.migrations import discover
from tests.conftest import empty_pg_database, insert_bare_workspace, migrate_in_processes, rows

EXPECTED_TABLES = {
    "workspaces",
    "leads",
    "messages",
    "background_jobs",
    "ai_interactions",
    "ai_drafts",
    "integration_health",
    "alerts",
    "context_packs",
    "context_pack_items",
    "cron_leases",
    "webhook_quarantine",
    "delivery_stats",
    "message_copies",
    "schema_migrations",
}

# The message columns migration 016 makes partial unique indexes of (with workspace_id).
KEY_COLUMNS = (*MESSAGE_KEYS, "delivery_id")


@pytest.fixture(params=["sqlite", "postgres"])
async def fresh_url(
    request: pytest.FixtureRequest, tmp_path: Path, pg_server_url: str
) -> AsyncIterator[str]:
    """An empty database that no migration has touched."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    async with empty_pg_database(pg_server_url, "hg_mig") as url:
        yield url


async def _tables(url: str) -> set[str]:
    if url.startswith("sqlite"):
        found = await rows(url, "SELECT name FROM sqlite_master WHERE type = 'table'")
        return {r["name"] for r in found} - {"sqlite_sequence"}
    found = await rows(url, "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'")
    return {r["name"] for r in found}


async def test_applying_twice_applies_nothing_the_second_time(fresh_url: str) -> None:
    db = await connect(fresh_url)
    try:
        migrations = discover(db.dialect)
        first = await db.apply_migrations(migrations)
        second = await db.apply_migrations(migrations)
    finally:
        await db.close()
    assert [m.version for m in first] == [m.version for m in migrations]
    assert second == []
    assert await _tables(fresh_url) >= EXPECTED_TABLES
    recorded = await rows(fresh_url, "SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in recorded] == [m.version for m in migrations]


async def test_two_processes_migrating_at_once_leave_one_consistent_schema(fresh_url: str) -> None:
    for status, out, err in await migrate_in_processes(2, DATABASE_URL=fresh_url):
        assert status == 0, err
        assert "schema is at version" in out
    assert await _tables(fresh_url) >= EXPECTED_TABLES
    recorded = await rows(fresh_url, "SELECT version FROM schema_migrations ORDER BY version")
    dialect = "sqlite" if fresh_url.startswith("sqlite") else "postgres"
    assert [r["version"] for r in recorded] == [m.version for m in discover(dialect)]


async def test_the_key_indexes_become_partial_on_a_database_that_holds_messages(
    pg_server_url: str,
) -> None:
    """Migration 016 on a database at version 15 that already stores messages and leads of
    several providers: every row is kept, and each key still refuses a second row with the
    same value in the workspace (rows without the key never conflicted, and still do not)."""
    async with empty_pg_database(pg_server_url, "hg_mig016") as url:
        db = await connect(url)
        try:
            migrations = discover("postgres")
            await db.apply_migrations([m for m in migrations if m.version < 16])
            conn = await asyncpg.connect(url)
            try:
                await insert_bare_workspace(conn, "w")
                await conn.execute(
                    "INSERT INTO leads (workspace_id, email, phone, created_at, updated_at)"
                    " VALUES ('w', 'a@example.com', NULL, now(), now()),"
                    " ('w', NULL, '+15550100', now(), now()), ('w', NULL, NULL, now(), now())"
                )
                for key in KEY_COLUMNS:
                    await conn.execute(
                        "INSERT INTO messages (workspace_id, channel, direction, provider, event,"
                        f" created_at, {key}) VALUES ('w', 'email', 'inbound', 'emailbison',"
                        f" 'LEAD_REPLIED', now(), 'k-{key}')"
                    )
                assert [m.version for m in await db.apply_migrations(migrations)] == [16]
                assert await conn.fetchval("SELECT count(*) FROM messages") == 6
                assert await conn.fetchval("SELECT count(*) FROM leads") == 3
                for key in KEY_COLUMNS:
                    with pytest.raises(asyncpg.UniqueViolationError):
                        await conn.execute(
                            "INSERT INTO messages (workspace_id, channel, direction, provider,"
                            f" event, created_at, {key}) VALUES ('w', 'email', 'inbound',"
                            f" 'emailbison', 'LEAD_REPLIED', now(), 'k-{key}')"
                        )
                for key, value in (("email", "a@example.com"), ("phone", "+15550100")):
                    with pytest.raises(asyncpg.UniqueViolationError):
                        await conn.execute(
                            f"INSERT INTO leads (workspace_id, {key}, created_at, updated_at)"
                            f" VALUES ('w', '{value}', now(), now())"
                        )
                await conn.execute(  # a second lead with no identity at all is still allowed
                    "INSERT INTO leads (workspace_id, created_at, updated_at)"
                    " VALUES ('w', now(), now())"
                )
            finally:
                await conn.close()
        finally:
            await db.close()
