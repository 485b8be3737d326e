"""The PostgreSQL adapter of the database port: an asyncpg pool."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from sql import queries
from sql.database import Row
from sql.errors import classify
from sql.migrations import Migration

MIGRATION_LOCK_KEY = 0x686F6F6B67617465  # "hookgate"

DIALECT = "postgres"


def _bind(name: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    query = queries.get(DIALECT, name)
    try:
        return query.positional_sql, [params[p] for p in query.params]
    except KeyError as missing:
        raise TypeError(f"query {name!r} needs parameter {missing}") from None


def _rowcount(status: str) -> int:
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release.  asyncpg always rolls back an open transaction first; its
    default reset then runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` — a
    round trip on every release that undoes state hookgate never creates (it takes only
    transaction-scoped advisory locks, sets no session variables, opens no cursors outside a
    transaction and never listens).  So there is nothing left to reset."""


class PostgresConnection:
    """The three verbs on one pooled connection (inside a transaction)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, query: str, /, **params: Any) -> int:
        sql, args = _bind(query, params)
        try:
            return _rowcount(await self._conn.execute(sql, *args))
        except Exception as exc:
            raise classify(exc) from exc

    async def fetch_one(self, query: str, /, **params: Any) -> Row | None:
        sql, args = _bind(query, params)
        try:
            record = await self._conn.fetchrow(sql, *args)
        except Exception as exc:
            raise classify(exc) from exc
        return None if record is None else dict(record)

    async def fetch_all(self, query: str, /, **params: Any) -> list[Row]:
        sql, args = _bind(query, params)
        try:
            records = await self._conn.fetch(sql, *args)
        except Exception as exc:
            raise classify(exc) from exc
        return [dict(r) for r in records]


class PostgresDatabase:
    dialect = DIALECT

    def __init__(self, pool: asyncpg.Pool, timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    @classmethod
    async def open(
        cls, url: str, *, pool_size: int, statement_cache: bool, timeout_s: float
    ) -> PostgresDatabase:
        try:
            pool = await asyncpg.create_pool(
                url.replace("postgres://", "postgresql://", 1),
                min_size=1,
                max_size=pool_size,
                timeout=timeout_s,
                command_timeout=max(timeout_s, 30.0),
                statement_cache_size=100 if statement_cache else 0,
                max_inactive_connection_lifetime=60.0,
                reset=_keep_session,
            )
        except Exception as exc:
            raise classify(exc) from exc
        return cls(pool, timeout_s)

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[asyncpg.Connection]:
        # A cancellation anywhere in here lets asyncpg's pool roll back (or terminate) the
        # connection on release: no session is ever left idle in transaction.
        try:
            conn = await self._pool.acquire(timeout=self._timeout_s)
        except Exception as exc:
            raise classify(exc) from exc
        try:
            yield conn
        finally:
            # When the reset on release fails (the server went away), asyncpg has already
            # terminated the connection; what the block did (or raised) is what counts.
            with contextlib.suppress(Exception):
                await self._pool.release(conn)

    async def execute(self, query: str, /, **params: Any) -> int:
        async with self._acquire() as conn:
            return await PostgresConnection(conn).execute(query, **params)

    async def fetch_one(self, query: str, /, **params: Any) -> Row | None:
        async with self._acquire() as conn:
            return await PostgresConnection(conn).fetch_one(query, **params)

    async def fetch_all(self, query: str, /, **params: Any) -> list[Row]:
        async with self._acquire() as conn:
            return await PostgresConnection(conn).fetch_all(query, **params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresConnection]:
        async with self._acquire() as conn:
            tx = conn.transaction()
            try:
                await tx.start()
            except Exception as exc:
                raise classify(exc) from exc
            try:
                yield PostgresConnection(conn)
            except BaseException:
                # A connection that is gone (or already handed back by asyncpg when it broke)
                # cannot roll back; release() then terminates or skips it.
                with contextlib.suppress(Exception):
                    if not conn.is_closed():
                        await tx.rollback()
                raise
            try:
                await tx.commit()
            except Exception as exc:
                raise classify(exc) from exc

    async def apply_migrations(self, migrations: Sequence[Migration]) -> list[Migration]:
        """Apply the migrations not yet recorded, all in one transaction that first takes a
        transaction-scoped advisory lock: replicas starting together apply each exactly once,
        and the lock cannot outlive the transaction (safe behind pgbouncer's transaction
        pooling, where a session-level lock could be left on a server connection)."""
        applied: list[Migration] = []
        async with self._acquire() as raw:
            conn = PostgresConnection(raw)
            try:
                async with raw.transaction():
                    await conn.execute("migration_lock", key=MIGRATION_LOCK_KEY)
                    await conn.execute("create_schema_migrations")
                    done = {r["version"] for r in await conn.fetch_all("applied_migrations")}
                    for migration in migrations:
                        if migration.version not in done:
                            await raw.execute(migration.script)
                            await conn.execute(
                                "record_migration", version=migration.version, name=migration.name
                            )
                            applied.append(migration)
            except Exception as exc:
                raise classify(exc) from exc
        return applied

    async def close(self) -> None:
        await self._pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool
