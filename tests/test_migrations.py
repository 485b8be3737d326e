"""Migrations: applied in order, each exactly once, also when two processes start together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sql import connect
from sql.migrations import discover
from tests.conftest import empty_pg_database, migrate_in_processes, rows

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
