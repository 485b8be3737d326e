"""Shared fixtures: real databases on both backends, the ASGI app, a live server, fixtures.

PostgreSQL always runs: ``HOOKGATE_TEST_POSTGRES_URL`` if set, else 127.0.0.1:5432 (user
postgres, database test), else a throwaway cluster started here.  Each test session creates its
own database and drops it at the end; each test starts from empty tables.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import asyncpg
import httpx2
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from gateway.workspaces import CreatedWorkspace, WorkspaceOptions, create_workspace
from sql import Database, connect
from sql.migrations import discover
from tests.fakes import (  # noqa: F401  (fixtures: fake provider servers on 127.0.0.1)
    fake_emailbison,
    fake_openai,
    fake_server,
    fake_slack,
    fake_unipile,
)
from tests.pg_cluster import Cluster, free_port
from tests.pgbouncer import bouncer  # noqa: F401  (fixture: pgbouncer in transaction mode)

T = TypeVar("T")

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent

TABLES = (
    "delivery_stats, message_copies, job_queue_samples, webhook_quarantine, cron_leases, "
    "context_pack_items, context_packs, alerts, integration_health, ai_drafts, ai_interactions, "
    "background_jobs, messages, leads, workspaces"
)


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    return dict(json.loads(fixture_bytes(name)))


def encode(payload: dict[str, Any]) -> bytes:
    """A payload as a provider would send it (UTF-8 JSON, non-ASCII kept as is)."""
    return json.dumps(payload, ensure_ascii=False).encode()


def utc(value: str | dt.datetime) -> dt.datetime:
    """A stored timestamp as an aware datetime (``rows`` hands SQLite's back as text)."""
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    return value


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, even while a loop is running."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _server_reachable(url: str) -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(url, timeout=3)
        except Exception:
            return False
        await conn.close()
        return True

    return run_blocking(probe())


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A PostgreSQL server we may create databases on.  Never skipped: if none can be had the
    session fails loudly."""
    configured = os.environ.get("HOOKGATE_TEST_POSTGRES_URL")
    if configured:
        if not _server_reachable(configured):
            pytest.fail(f"HOOKGATE_TEST_POSTGRES_URL is set but unreachable: {configured}")
        yield configured
        return
    local = "postgresql://postgres@127.0.0.1:5432/test"
    if _server_reachable(local):
        yield local
        return
    cluster = Cluster().init()
    cluster.start()
    try:
        yield cluster.url
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A database of this test session's own, migrated, dropped at the end."""
    name = f"hg_test_{secrets.token_hex(4)}"

    async def create() -> None:
        admin = await asyncpg.connect(pg_server_url)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        db = await connect(_with_database(pg_server_url, name))
        await db.apply_migrations(discover(db.dialect))
        await db.close()

    async def drop() -> None:
        admin = await asyncpg.connect(pg_server_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    run_blocking(create())
    try:
        yield _with_database(pg_server_url, name)
    finally:
        run_blocking(drop())


@asynccontextmanager
async def empty_pg_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """A PostgreSQL database no migration has touched, dropped at the end."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield _with_database(server_url, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def migrate_in_processes(n: int, **env: str) -> list[tuple[int, str, str]]:
    """``hookgate migrate`` in ``n`` processes started at once; (exit status, stdout, stderr)."""
    environment = {**os.environ, "LOG_LEVEL": "WARNING", **env}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.cli",
            "migrate",
            env=environment,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(n)
    ]
    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in processes)), 60)
    return [
        (int(p.returncode or 0), out.decode(), err.decode())
        for p, (out, err) in zip(processes, outputs, strict=True)
    ]


async def _truncate(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path, pg_server_url: str) -> str:
    """Each backend in turn, empty."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hookgate.db'}"
    url: str = request.getfixturevalue("pg_url")
    await _truncate(url)
    return url


@pytest.fixture
async def postgres_url(pg_url: str) -> str:
    """PostgreSQL only (behaviour that exists only there), empty."""
    await _truncate(pg_url)
    return pg_url


def make_settings(database_url: str, **overrides: str) -> Settings:
    env = {
        "DATABASE_URL": database_url,
        "HOOKGATE_PUBLIC_URL": "http://127.0.0.1:8000",
        "HOOKGATE_ADMIN_TOKEN": "admin-test-token",
        "CRON_SECRET": "cron-test-secret",
        "JOB_POLL_INTERVAL_MS": "50",
        "LOG_LEVEL": "WARNING",
    }
    env.update(overrides)
    return Settings.from_env(env)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = await connect(settings.database_url, pool_size=20)
    await database.apply_migrations(discover(database.dialect))
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def workspace(db: Database) -> CreatedWorkspace:
    return await create_workspace(db, "Acme Outbound", WorkspaceOptions(slack_channel="#replies"))


@dataclass
class AppClient:
    """The ASGI app with its lifespan running, and an httpx2 client bound to it."""

    http: httpx2.AsyncClient
    app: Any

    def url(self, provider: str, workspace: CreatedWorkspace, *, token: str | None = None) -> str:
        tok = workspace.tokens[provider] if token is None else token
        return f"/webhooks/{provider}/{workspace.id}?token={tok}"


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[AppClient]:
    """The app with ``settings``, its lifespan running, and an HTTP client on it (ASGI)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield AppClient(http, app)


@pytest.fixture
async def client(settings: Settings, db: Database) -> AsyncIterator[AppClient]:
    async with app_client(settings) as http:
        yield http


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen[bytes]


def start_server(
    settings_env: dict[str, str],
    *,
    command: str = "serve",
    stdout: IO[bytes] | int = subprocess.DEVNULL,
    stderr: IO[bytes] | None = None,
) -> LiveServer:
    """Run ``hookgate serve`` as a real process on a free port and wait until it is ready
    (its stdout discarded and its stderr inherited unless files are given for them)."""
    port = free_port()
    env = {**os.environ, **settings_env, "HOOKGATE_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    args = [sys.executable, "-m", "gateway.cli", command]
    if command == "serve":
        args += ["--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=stdout, stderr=stderr)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while command == "serve":
        if process.poll() is not None:
            raise RuntimeError(f"hookgate {command} exited with {process.returncode}")
        try:
            if httpx2.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                break
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("hookgate serve did not become ready within 20 s")
        time.sleep(0.1)
    return LiveServer(base_url, process)


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def live_server(settings: Settings, db: Database) -> Iterator[LiveServer]:
    server = start_server({"DATABASE_URL": settings.database_url, "LOG_LEVEL": "WARNING"})
    try:
        yield server
    finally:
        stop_server(server)


async def rows(database_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Run an inspection query straight through the driver (tests look at the real tables, and
    may move a stored time with an UPDATE; ``$1`` parameters are rewritten to ``?`` for
    SQLite)."""
    if database_url.startswith("sqlite:///"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        conn.row_factory = sqlite3.Row
        try:
            cursor = conn.execute(re.sub(r"\$\d+", "?", sql), args)
            found = [dict(r) for r in cursor.fetchall()]
            conn.commit()
            return found
        finally:
            conn.close()
    pg = await asyncpg.connect(database_url)
    try:
        return [dict(r) for r in await pg.fetch(sql, *args)]
    finally:
        await pg.close()


async def insert_bare_workspace(pg: asyncpg.Connection, workspace_id: str) -> None:
    """A workspace row with only what the schema requires (placeholder token hashes), for tests
    that write the tables straight through the driver."""
    await pg.execute(
        "INSERT INTO workspaces (id, name, emailbison_token_hash, ghl_token_hash,"
        " unipile_token_hash, smartlead_token_hash, instantly_token_hash)"
        " VALUES ($1, $1, 'a', 'b', 'c', 'd', 'e')",
        workspace_id,
    )


async def count(database_url: str, table: str, where: str = "true", *args: Any) -> int:
    found = await rows(database_url, f"SELECT count(*) AS n FROM {table} WHERE {where}", *args)
    return int(found[0]["n"])
