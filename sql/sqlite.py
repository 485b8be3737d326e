"""The SQLite adapter of the database port: aiosqlite, WAL, one writer connection.

SQLite has one writer at a time anyway, so all writes go through one connection guarded by an
``asyncio.Lock``: a write transaction opens with ``BEGIN IMMEDIATE`` and holds the lock until it
commits or rolls back, which is why 100 simultaneous deliveries never see "database is locked".
Read-only statements outside a transaction use a second connection, which WAL lets run beside
the writer.  The writer syncs the WAL at every commit (``synchronous=FULL``: a committed delivery
survives a power loss) unless told to trade that away (``SQLITE_SYNCHRONOUS`` in
``sql.database``).  Timestamps are stored as UTC text ``YYYY-MM-DD HH:MM:SS.ffffff`` (which sorts
like time) and come back as aware datetimes, as they do from PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import aiosqlite

from sql import queries
from sql.database import SQLITE_SYNCHRONOUS, Row, timestamp_text
from sql.errors import DatabaseUnavailable, classify
from sql.migrations import Migration

DIALECT = "sqlite"
_UTC = dt.UTC


def _convert_timestamp(raw: bytes) -> dt.datetime:
    return dt.datetime.fromisoformat(raw.decode()).replace(tzinfo=_UTC)


sqlite3.register_adapter(dt.datetime, timestamp_text)
sqlite3.register_converter("TIMESTAMP", _convert_timestamp)
sqlite3.register_converter("BOOLEAN", lambda raw: raw not in (b"0", b""))


def _database_now_plus(seconds: float) -> str:
    """SQLite's ``now_plus(seconds)`` (and, with 0, ``now()``): the database's clock, in the
    stored timestamp format.  PostgreSQL has ``now()`` built in and ``now_plus`` from migration
    005, so statements that compare leases and expiries with the database's clock are written
    once for both dialects.  (On SQLite the database is a local file: its clock is this
    machine's.)"""
    return timestamp_text(dt.datetime.now(_UTC) + dt.timedelta(seconds=seconds))


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


def _bind(name: str) -> str:
    return queries.get(DIALECT, name).sql


class SqliteConnection:
    """The three verbs on one aiosqlite connection."""

    __slots__ = ("_conn",)

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, query: str, /, **params: Any) -> int:
        compiled = queries.get(DIALECT, query)
        try:
            if compiled.returns_rows:
                # Step a RETURNING statement to its end, or COMMIT finds it still in progress.
                return len(cast(list[Row], await self._conn.execute_fetchall(compiled.sql, params)))
            cursor = await self._conn.execute(compiled.sql, params)
        except Exception as exc:
            raise classify(exc) from exc
        return int(cursor.rowcount)

    async def fetch_one(self, query: str, /, **params: Any) -> Row | None:
        rows = await self.fetch_all(query, **params)
        return rows[0] if rows else None

    async def fetch_all(self, query: str, /, **params: Any) -> list[Row]:
        sql = _bind(query)
        try:
            return cast(list[Row], await self._conn.execute_fetchall(sql, params))
        except Exception as exc:
            raise classify(exc) from exc


async def _open_connection(path: str, timeout_s: float) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(
        path,
        timeout=timeout_s,
        isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
        detect_types=sqlite3.PARSE_DECLTYPES,
    )
    conn.row_factory = _dict_row  # type: ignore[assignment]  # aiosqlite types it narrowly
    await conn.create_function("now", 0, lambda: _database_now_plus(0.0))
    await conn.create_function("now_plus", 1, _database_now_plus)
    await conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
    await conn.execute("PRAGMA foreign_keys = ON")
    return conn


class SqliteDatabase:
    dialect = DIALECT

    def __init__(
        self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, timeout_s: float
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._timeout_s = timeout_s
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str, *, timeout_s: float, synchronous: str) -> SqliteDatabase:
        if synchronous not in SQLITE_SYNCHRONOUS:
            raise ValueError(
                f"synchronous must be one of {SQLITE_SYNCHRONOUS}, got {synchronous!r}"
            )
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            writer = await _open_connection(path, timeout_s)
            await writer.execute("PRAGMA journal_mode = WAL")
            await writer.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            reader = await _open_connection(path, timeout_s)
            await reader.execute("PRAGMA query_only = ON")
        except Exception as exc:
            raise classify(exc) from exc
        return cls(writer, reader, timeout_s)

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[aiosqlite.Connection]:
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._write_lock.acquire()
        except TimeoutError:
            raise DatabaseUnavailable("timed out waiting for the SQLite writer") from None
        try:
            yield self._writer
        finally:
            self._write_lock.release()

    async def execute(self, query: str, /, **params: Any) -> int:
        async with self._writing() as conn:
            return await SqliteConnection(conn).execute(query, **params)

    async def fetch_one(self, query: str, /, **params: Any) -> Row | None:
        rows = await self.fetch_all(query, **params)
        return rows[0] if rows else None

    async def fetch_all(self, query: str, /, **params: Any) -> list[Row]:
        if queries.get(DIALECT, query).readonly:
            return await SqliteConnection(self._reader).fetch_all(query, **params)
        async with self._writing() as conn:
            return await SqliteConnection(conn).fetch_all(query, **params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteConnection]:
        async with self._writing() as conn:
            try:
                await _run(conn, "BEGIN IMMEDIATE")
                yield SqliteConnection(conn)
                await _run(conn, "COMMIT")
            except BaseException:
                # An error, or a cancellation at any await — BEGIN's and COMMIT's included.  The
                # writer's thread runs a statement even when the task awaiting it is cancelled, so
                # whether BEGIN has run yet cannot be known here: the ROLLBACK is queued
                # unconditionally, behind it (the thread runs calls in order).  Shielded: a second
                # cancellation must not skip it, and the next BEGIN queues behind it regardless.
                await asyncio.shield(_rollback(conn))
                raise

    async def apply_migrations(self, migrations: Sequence[Migration]) -> list[Migration]:
        applied: list[Migration] = []
        async with self.transaction() as conn:
            await conn.execute("create_schema_migrations")
            done = {r["version"] for r in await conn.fetch_all("applied_migrations")}
            for migration in migrations:
                if migration.version in done:
                    continue
                for statement in _statements(migration.script):
                    try:
                        await self._writer.execute(statement)
                    except Exception as exc:
                        raise classify(exc) from exc
                await conn.execute(
                    "record_migration", version=migration.version, name=migration.name
                )
                applied.append(migration)
        return applied

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()


async def _run(conn: aiosqlite.Connection, statement: str) -> None:
    try:
        await conn.execute(statement)
    except Exception as exc:
        raise classify(exc) from exc


async def _rollback(conn: aiosqlite.Connection) -> None:
    # Fails only when no transaction is open (BEGIN failed, or COMMIT ran): nothing to undo.
    with contextlib.suppress(Exception):
        await conn.execute("ROLLBACK")


def _statements(script: str) -> list[str]:
    """Split a script into complete statements (``sqlite3.complete_statement`` knows triggers)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                statements.append(pending.strip())
            pending = ""
    if pending.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in pending.splitlines()
    ):
        raise ValueError(f"incomplete statement at the end of a migration: {pending[:80]!r}")
    return statements
