"""The database port on both backends: verbs, types, transactions and error translation."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from gateway.runtime import open_runtime
from gateway.settings import Settings, SettingsError
from gateway.workspaces import WorkspaceOptions, create_workspace
from sql import (
    ConstraintViolation,
    Database,
    DatabaseError,
    DatabaseUnavailable,
    connect,
    database_now,
    is_connection_lost,
)
from sql.errors import UnknownQuery, classify
from sql.migrations import discover
from sql.queries import compile_query, parse
from tests.cancel_support import CancelAtSuspension
from tests.conftest import make_settings, rows


async def test_rows_are_dicts_with_aware_utc_datetimes_and_bools(db: Database) -> None:
    created = await create_workspace(db, "Acme", WorkspaceOptions(auto_send=True))
    row = await db.fetch_one("get_workspace", id=created.id)
    assert row is not None and row["name"] == "Acme"
    assert row["auto_send"] is True
    assert isinstance(row["created_at"], dt.datetime)
    assert row["created_at"].utcoffset() == dt.timedelta(0)
    assert await db.fetch_one("get_workspace", id="ws_missing") is None
    assert [r["id"] for r in await db.fetch_all("list_workspaces")] == [created.id]


async def test_the_database_clock_is_an_aware_utc_datetime_on_both_backends(db: Database) -> None:
    before = dt.datetime.now(dt.UTC)
    now = await database_now(db)
    after = dt.datetime.now(dt.UTC)
    assert now.utcoffset() == dt.timedelta(0)
    # Same machine, so the database's clock reads the same time as this one, within a second.
    assert before - dt.timedelta(seconds=1) <= now <= after + dt.timedelta(seconds=1)


async def test_execute_returns_the_rows_changed(db: Database) -> None:
    assert await db.execute("mark_alert_sent", id=12345, claimed_at=dt.datetime.now(dt.UTC)) == 0


async def test_a_transaction_that_raises_rolls_back(db: Database) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with db.transaction() as conn:
            await conn.execute(
                "insert_workspace",
                **workspace_params("ws_00000000000000aa"),
            )
            raise Boom
    assert await db.fetch_one("get_workspace", id="ws_00000000000000aa") is None


async def test_a_cancelled_transaction_rolls_back_and_frees_the_database(db: Database) -> None:
    entered = asyncio.Event()

    async def stuck() -> None:
        async with db.transaction() as conn:
            await conn.execute("insert_workspace", **workspace_params("ws_00000000000000bb"))
            entered.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(stuck())
    await asyncio.wait_for(entered.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await db.fetch_one("get_workspace", id="ws_00000000000000bb") is None
    async with asyncio.timeout(5):  # the writer / connection is free again
        await db.execute("insert_workspace", **workspace_params("ws_00000000000000cc"))


async def _two_statement_transaction(db: Database, ids: list[str]) -> None:
    async with db.transaction() as conn:
        for workspace_id in ids:
            await conn.execute("insert_workspace", **workspace_params(workspace_id))


async def _plain_write(db: Database, ids: list[str]) -> None:
    [workspace_id] = ids
    await db.execute("insert_workspace", **workspace_params(workspace_id))


# The write a cancellation lands in; the fewest awaits it has: waiting for the writer (SQLite)
# or the pool's only connection (PostgreSQL), then BEGIN, each statement, COMMIT.
CANCELLED_WRITES = {
    "transaction": (_two_statement_transaction, 2, 5),
    "plain write": (_plain_write, 1, 2),
}


@pytest.mark.parametrize("write", CANCELLED_WRITES)
async def test_a_cancellation_at_any_await_of_a_write_leaves_the_database_working(
    database_url: str, write: str
) -> None:
    """The write is cancelled at each of its awaits in turn, the first one spent waiting for
    another transaction to let go of the writer or connection.  Each time it is all or nothing,
    and afterwards the next transaction and a plain write are committed: another connection
    reads them back."""
    run_write, statements, fewest_awaits = CANCELLED_WRITES[write]
    db = await connect(database_url, pool_size=1, timeout_s=5)
    await db.apply_migrations(discover(db.dialect))
    cancelled_at: list[str] = []
    try:
        for at in range(1, 50):
            ids = [f"ws_{at:014x}a{i}" for i in range(statements)]
            attempt, suspensions = await _cancelled_at(db, at, run_write(db, ids))
            if attempt.cancelled():
                where = suspensions[at - 1]
                cancelled_at.append(where)
            else:
                assert attempt.result() is None  # cancelled after its last await: committed
                where = "the end"
            stored = await _stored(database_url, ids)
            assert len(stored) in (0, statements), f"half a write stored, cancelled at {where}"
            after = [f"ws_{at:014x}b0", f"ws_{at:014x}c0"]
            async with asyncio.timeout(10):
                await _two_statement_transaction(db, after[:1])
                await _plain_write(db, after[1:])
            assert await _stored(database_url, after) == after, f"lost after {where}"
            if where == "the end":
                break
    finally:
        await db.close()
    assert len(cancelled_at) >= fewest_awaits, cancelled_at


async def _stored(database_url: str, ids: list[str]) -> list[str]:
    """Which of ``ids`` another connection sees committed."""
    found = await rows(database_url, "SELECT id FROM workspaces ORDER BY id")
    return [row["id"] for row in found if row["id"] in ids]


async def _cancelled_at(
    db: Database, at: int, write: Coroutine[Any, Any, None]
) -> tuple[asyncio.Task[None], list[str]]:
    """Runs ``write`` while another transaction holds the writer (or the pool's only
    connection) until the write waits for it; cancels it at its ``at``-th suspension."""
    holding, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with db.transaction() as conn:
            await conn.fetch_one("ping")
            holding.set()
            await release.wait()

    holder_task = asyncio.create_task(holder())
    await holding.wait()
    victim = CancelAtSuspension(write, at)
    task: asyncio.Task[None] = asyncio.create_task(victim)
    async with asyncio.timeout(10):
        await victim.suspended.wait()  # it waits for the writer or connection
        release.set()
        await holder_task
        await asyncio.wait([task])
    return task, victim.suspensions


@pytest.mark.parametrize(("setting", "pragma"), [(None, 2), ("full", 2), ("normal", 1)])
async def test_the_sqlite_writer_syncs_every_commit_unless_told_otherwise(
    tmp_path: Path, setting: str | None, pragma: int
) -> None:
    """``synchronous=FULL`` (2) by default: a committed delivery survives a power loss.
    ``DATABASE_SQLITE_SYNCHRONOUS=normal`` (1) trades that away."""
    env = {} if setting is None else {"DATABASE_SQLITE_SYNCHRONOUS": setting}
    settings = make_settings(f"sqlite:///{tmp_path / 'sync.db'}", **env)
    async with open_runtime(settings) as runtime:
        writer = runtime.db._writer  # type: ignore[attr-defined]  # the pragma is per connection
        assert await writer.execute_fetchall("PRAGMA synchronous") == [{"synchronous": pragma}]
        assert await writer.execute_fetchall("PRAGMA journal_mode") == [{"journal_mode": "wal"}]


def test_an_unknown_sqlite_synchronous_mode_is_refused() -> None:
    with pytest.raises(SettingsError, match="DATABASE_SQLITE_SYNCHRONOUS must be one of full"):
        Settings.from_env({"DATABASE_SQLITE_SYNCHRONOUS": "off"})


async def test_a_unique_violation_is_a_constraint_violation(db: Database) -> None:
    await db.execute("insert_workspace", **workspace_params("ws_00000000000000dd"))
    with pytest.raises(ConstraintViolation):
        await db.execute("insert_workspace", **workspace_params("ws_00000000000000dd"))


async def test_a_parameter_the_driver_cannot_bind_is_an_error_not_an_outage(db: Database) -> None:
    """asyncpg's client-side DataError is an InterfaceError, like a lost connection; called an
    outage, the delivery would be answered 503 for ever.  sqlite3's binding error has no code."""
    with pytest.raises(DatabaseError) as caught:
        await db.execute("mark_alert_sent", id={"not": "an id"}, claimed_at=dt.datetime.now(dt.UTC))
    assert not isinstance(caught.value, DatabaseUnavailable)
    assert not is_connection_lost(caught.value)


def _busy(path: Path) -> None:
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    sqlite3.connect(path, timeout=0).execute("BEGIN IMMEDIATE")


def _read_only(path: Path) -> None:
    sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("INSERT INTO t VALUES (1)")


def _full(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA max_page_count = 2")  # what a full disk looks like to SQLite
    conn.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))


def _cannot_open(path: Path) -> None:
    sqlite3.connect(path.parent / "missing" / "hookgate.db")


def _constraint_saying_locked(path: Path) -> None:
    """A constraint violation whose text is "database is locked": classified by code, not text."""
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON t BEGIN "
        "SELECT RAISE(ABORT, 'database is locked'); END"
    )
    conn.execute("INSERT INTO t VALUES (1)")


def _syntax(path: Path) -> None:
    sqlite3.connect(path).execute("SELEC 1")


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (_busy, DatabaseUnavailable),
        (_read_only, DatabaseUnavailable),
        (_full, DatabaseUnavailable),
        (_cannot_open, DatabaseUnavailable),
        (_constraint_saying_locked, ConstraintViolation),
        (_syntax, DatabaseError),
    ],
    ids=["busy", "read-only", "full", "cannot-open", "constraint", "syntax"],
)
def test_sqlite_errors_are_classified_by_their_code(
    tmp_path: Path, cause: Callable[[Path], None], expected: type[DatabaseError]
) -> None:
    path = tmp_path / "codes.db"
    sqlite3.connect(path, isolation_level=None).execute("CREATE TABLE t (x)")
    with pytest.raises(sqlite3.Error) as raised:
        cause(path)
    assert type(classify(raised.value)) is expected, raised.value.sqlite_errorname


async def test_a_sqlite_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable, match="SQLITE_CANTOPEN"):
        await connect(f"sqlite:///{tmp_path}")  # a directory
    # aiosqlite stops its worker thread after a failed connect without waiting for it: let the
    # thread hand back its last result before this test's event loop closes.
    for _ in range(500):
        if not any(t.name.endswith("(_connection_worker_thread)") for t in threading.enumerate()):
            break
        await asyncio.sleep(0.01)


async def test_an_unknown_query_name_is_reported(db: Database) -> None:
    with pytest.raises(UnknownQuery, match="no query named 'nope'"):
        await db.fetch_one("nope")


async def test_many_concurrent_write_transactions_never_see_a_lock_error(db: Database) -> None:
    async def write(i: int) -> None:
        async with db.transaction() as conn:
            await conn.execute("insert_workspace", **workspace_params(f"ws_{i:016x}"))

    await asyncio.gather(*(write(i) for i in range(100)))
    assert len(await db.fetch_all("list_workspaces")) == 100


def test_named_queries_bind_parameters_for_both_drivers() -> None:
    parsed = parse(
        "-- name: one\n-- a comment: with a colon\n"
        "SELECT :a::text, :b, :a WHERE x = ':c';\n"
        "-- name: two\nUPDATE t SET y = :y RETURNING id;"
    )
    one = compile_query("one", parsed["one"])
    assert one.positional_sql == "SELECT $1::text, $2, $1 WHERE x = ':c'"
    assert one.params == ("a", "b")
    assert one.readonly and one.returns_rows
    two = compile_query("two", parsed["two"])
    assert not two.readonly and two.returns_rows


def test_a_query_defined_twice_in_a_file_is_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        parse("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;")


def test_a_query_template_is_one_named_query_per_key_column() -> None:
    parsed = parse(
        "-- name: find_by_{key}\n-- keys: email, phone\n-- the lead by one identity\n"
        "SELECT id, {key} AS value FROM leads WHERE {key} = :value;"
    )
    assert parsed == {
        "find_by_email": "SELECT id, email AS value FROM leads WHERE email = :value",
        "find_by_phone": "SELECT id, phone AS value FROM leads WHERE phone = :value",
    }
    with pytest.raises(ValueError, match="keys"):
        parse("-- name: find_by_{key}\nSELECT {key} FROM leads;")


def workspace_params(workspace_id: str) -> dict[str, object]:
    hashes = {
        f"{p}_token_hash": "x" for p in ("emailbison", "ghl", "unipile", "smartlead", "instantly")
    }
    optional = dict.fromkeys(
        (
            "emailbison_workspace_id",
            "emailbison_api_key",
            "emailbison_base_url",
            "ghl_location_id",
            "ghl_public_key",
            "unipile_account_id",
            "unipile_own_id",
            "unipile_secret_hash",
            "smartlead_secret_hash",
            "instantly_secret_hash",
            "slack_channel",
        )
    )
    return {
        "id": workspace_id,
        "name": "n",
        "auto_send": False,
        "now": dt.datetime.now(dt.UTC),
        **hashes,
        **optional,
    }
