"""The database port: the one interface the rest of hookgate uses to reach a database.

Four verbs over named queries (``sql/queries.py``): ``execute``, ``fetch_one``, ``fetch_all`` and
``transaction()``, an async context manager yielding a connection with the same three verbs.
Two adapters implement it: ``sql.postgres`` (an asyncpg pool) and ``sql.sqlite`` (aiosqlite).
Rows come back as plain dicts; timestamps as aware UTC datetimes and booleans as bools on both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import orjson

from sql.migrations import Migration

Row = dict[str, Any]


def timestamp_text(value: dt.datetime) -> str:
    """A time as both backends store and compare it in text (SQLite's columns, and the rows of
    a JSON parameter): UTC, no offset, microseconds."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def json_rows(rows: Sequence[object]) -> str:
    """Many rows as the one JSON parameter a statement unpacks (``jsonb_to_recordset`` or
    ``jsonb_array_elements`` on PostgreSQL, ``json_each`` on SQLite)."""
    return orjson.dumps(rows).decode()


# SQLite's ``PRAGMA synchronous`` for the writer.  ``full`` (the default) syncs the WAL at every
# commit, so a committed delivery survives a power loss; ``normal`` syncs only at checkpoints:
# still consistent, but the last commits before a power loss (not a process crash) may roll back.
SQLITE_SYNCHRONOUS = ("full", "normal")


class Connection(Protocol):
    async def execute(self, query: str, /, **params: Any) -> int:
        """Run a statement; return the number of rows it changed."""
        ...

    async def fetch_one(self, query: str, /, **params: Any) -> Row | None: ...

    async def fetch_all(self, query: str, /, **params: Any) -> list[Row]: ...


class Database(Connection, Protocol):
    dialect: str

    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        """One transaction: committed when the block ends, rolled back when it raises or its
        task is cancelled.  On SQLite it holds the single writer (``BEGIN IMMEDIATE``)."""
        ...

    async def apply_migrations(self, migrations: Sequence[Migration]) -> list[Migration]:
        """Apply those of ``migrations`` not yet recorded in ``schema_migrations``, in order,
        each exactly once even when several processes call this at the same moment; return
        the ones this call applied."""
        ...

    async def close(self) -> None: ...


async def connect(
    url: str,
    *,
    pool_size: int = 10,
    pgbouncer: bool = False,
    timeout_s: float = 5.0,
    sqlite_synchronous: str = "full",
) -> Database:
    """Open the database that ``url`` names (``sqlite:///path`` or ``postgresql://…``)."""
    if url.startswith("sqlite:///"):
        from sql.sqlite import SqliteDatabase

        return await SqliteDatabase.open(
            url.removeprefix("sqlite:///"), timeout_s=timeout_s, synchronous=sqlite_synchronous
        )
    from sql.postgres import PostgresDatabase

    return await PostgresDatabase.open(
        url, pool_size=pool_size, statement_cache=not pgbouncer, timeout_s=timeout_s
    )


async def database_now(db: Connection) -> dt.datetime:
    """The database's clock, as an aware UTC datetime on both backends (SQLite's ``now()``
    comes back as the stored text)."""
    row = await db.fetch_one("database_now")
    assert row is not None
    value = row["now"]
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    assert isinstance(value, dt.datetime)
    return value.astimezone(dt.UTC)
