"""Migrations: applied in order, each exactly once, also when two processes start together."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from sql import connect
from sql.migrations import discover
from tests.conftest import ROOT, rows

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
    name = f"hg_mig_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(pg_server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{pg_server_url.rpartition('/')[0]}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


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
    env = {**os.environ, "DATABASE_URL": fresh_url, "LOG_LEVEL": "WARNING"}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.cli",
            "migrate",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = await asyncio.wait_for(
        asyncio.gather(*(p.communicate() for p in processes)), timeout=60
    )
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err.decode()
        assert b"schema is at version" in out
    assert await _tables(fresh_url) >= EXPECTED_TABLES
    recorded = await rows(fresh_url, "SELECT version FROM schema_migrations ORDER BY version")
    dialect = "sqlite" if fresh_url.startswith("sqlite") else "postgres"
    assert [r["version"] for r in recorded] == [m.version for m in discover(dialect)]
