"""The database port's own exceptions.  Driver errors are translated into these in one place
(``classify``), by error code wherever the driver gives one, so no caller ever catches an asyncpg
or sqlite3 exception and no caller reads an error's text."""

from __future__ import annotations

import asyncio
import sqlite3

import asyncpg


class DatabaseError(Exception):
    """A database call failed for a reason that retrying will not fix."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot serve this call right now (the P1001 class): refused, reset, a
    timeout, a server shutting down or read-only after a failover, a transaction that lost a
    lock or serialization race, a SQLite file locked past the busy timeout.  The same call,
    unchanged, may succeed later: retrying is the right answer."""


class ConstraintViolation(DatabaseError):
    """A statement broke a unique, foreign-key, not-null or check constraint."""


class UnknownQuery(DatabaseError):
    """No named query has that name for this dialect."""


# PostgreSQL SQLSTATEs after which the same statement may succeed later: the server or the
# connection is in a state that passes (README, "Database").  Anything else the server answers
# (a constraint, bad data, a missing table, a dropped database 57P04) is the statement's own.
_PG_UNAVAILABLE_CLASSES = (
    "08",  # connection exception
    "53",  # insufficient resources: too many connections 53300, disk full, out of memory
)
_PG_UNAVAILABLE_STATES = frozenset(
    {
        "25006",  # read-only transaction: a standby, or a primary demoted by a failover
        "40001",  # serialization failure
        "40P01",  # deadlock detected (this transaction was the victim)
        "55P03",  # lock not available (lock_timeout)
        "57014",  # query canceled (statement_timeout, pg_cancel_backend)
        "57P01",  # admin shutdown (also pg_terminate_backend)
        "57P02",  # crash shutdown
        "57P03",  # cannot connect now (starting up, shutting down, recovering)
        "57P05",  # idle session timeout: the session is gone, a new one will do
    }
)

# SQLite primary result codes (``sqlite_errorcode & 0xFF``; the extended codes such as
# SQLITE_IOERR_SHORT_READ or SQLITE_BUSY_SNAPSHOT share their primary's low byte) that describe
# the file or its environment rather than the statement: another writer holds the lock past the
# busy timeout, the disk failed, filled up or went read-only, the file cannot be opened.  An
# operator or time fixes them and the same write then succeeds, so the sender is asked to retry
# (503) rather than told it sent something wrong.  SQLITE_FULL is among them for that reason: a
# full disk is PostgreSQL's 53100, and answering it 500 would turn an operations problem into
# deliveries a provider may give up on.  SQLITE_CORRUPT and SQLITE_NOTADB are not: no retry
# repairs a damaged file, and a 500 with its traceback is what gets a human to look.
_SQLITE_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,  # a WAL locking race that SQLite itself gave up retrying
    }
)


def classify(exc: BaseException) -> DatabaseError:
    """Translate a driver exception into the project's own.  The one boundary for that."""
    if isinstance(exc, DatabaseError):
        return exc
    if isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError)):
        return DatabaseUnavailable(_describe(exc))
    if isinstance(exc, asyncpg.PostgresError):
        return _classify_postgres(exc)
    if isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError):
        # Client-side errors about the call itself (``asyncpg.exceptions._base.DataError``,
        # ClientConfigurationError) are InterfaceErrors, like a lost connection, but retrying
        # never fixes them: called an outage, a delivery would be answered 503 for ever.  (An
        # argument asyncpg 0.32 cannot encode — a str for an integer, an integer out of range —
        # raises ``asyncpg.DataError``, a PostgresError with SQLSTATE 22000, classified above.)
        return DatabaseError(_describe(exc))
    if isinstance(exc, (asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError)):
        # "connection is closed", "connection was closed in the middle of operation"
        # (ConnectionDoesNotExistError), "cannot switch to state …; another operation is in
        # progress" (a protocol torn down by a server shutdown): the connection went away.
        return DatabaseUnavailable(_describe(exc))
    if isinstance(exc, sqlite3.Error):
        return _classify_sqlite(exc)
    if isinstance(exc, ValueError) and str(exc) == "Connection closed":
        # aiosqlite's only signal that the port was closed under a call (at shutdown): it has
        # no error code or class of its own.
        return DatabaseUnavailable(_describe(exc))
    return DatabaseError(_describe(exc))


def _classify_postgres(exc: asyncpg.PostgresError) -> DatabaseError:
    sqlstate: str = getattr(exc, "sqlstate", "") or ""
    if sqlstate in _PG_UNAVAILABLE_STATES or sqlstate.startswith(_PG_UNAVAILABLE_CLASSES):
        return DatabaseUnavailable(_describe(exc))
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return ConstraintViolation(_describe(exc))
    return DatabaseError(_describe(exc))


def _classify_sqlite(exc: sqlite3.Error) -> DatabaseError:
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        # Raised by the sqlite3 module itself, not by SQLite: a parameter it cannot bind, a
        # misuse.  Like asyncpg's DataError, the call is wrong.
        return DatabaseError(_describe(exc))
    primary = code & 0xFF
    if primary in _SQLITE_UNAVAILABLE_CODES:
        return DatabaseUnavailable(_describe(exc))
    if primary == sqlite3.SQLITE_CONSTRAINT:
        return ConstraintViolation(_describe(exc))
    return DatabaseError(_describe(exc))


def is_connection_lost(exc: BaseException) -> bool:
    """True for the P1001 class: the same call may succeed once the database is back."""
    return isinstance(classify(exc), DatabaseUnavailable)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorname", None):
        return f"{type(exc).__name__} ({exc.sqlite_errorname}): {text}"
    if isinstance(exc, asyncpg.PostgresError) and getattr(exc, "sqlstate", None):
        return f"{type(exc).__name__} ({exc.sqlstate}): {text}"
    return f"{type(exc).__name__}: {text}"
