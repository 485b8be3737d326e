"""The database port's own exceptions.  Driver errors are translated into these in one place
(``classify``), so no caller ever catches an asyncpg or sqlite3 exception."""

from __future__ import annotations

import asyncio
import sqlite3

import asyncpg


class DatabaseError(Exception):
    """A database call failed for a reason that retrying will not fix."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached right now (the P1001 class): refused, reset, too many
    connections, a timeout, a server shutting down, a SQLite file locked past the busy timeout.
    Retrying later is the right answer."""


class ConstraintViolation(DatabaseError):
    """A statement broke a unique, foreign-key, not-null or check constraint."""


class UnknownQuery(DatabaseError):
    """No named query has that name for this dialect."""


_PG_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57P")

_SQLITE_UNAVAILABLE_TEXT = ("database is locked", "unable to open database", "disk i/o error")


def classify(exc: BaseException) -> DatabaseError:
    """Translate a driver exception into the project's own.  The one boundary for that."""
    if isinstance(exc, DatabaseError):
        return exc
    if isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError)):
        return DatabaseUnavailable(_describe(exc))
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = getattr(exc, "sqlstate", "") or ""
        if sqlstate.startswith(_PG_UNAVAILABLE_SQLSTATE_CLASSES):
            return DatabaseUnavailable(_describe(exc))
        if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
            return ConstraintViolation(_describe(exc))
        return DatabaseError(_describe(exc))
    if isinstance(
        exc,
        (
            asyncpg.InterfaceError,
            asyncpg.exceptions.ConnectionDoesNotExistError,
            asyncpg.exceptions.InternalClientError,
        ),
    ):
        # "connection is closed", "connection was closed in the middle of operation", "cannot
        # switch to state …; another operation is in progress" (a protocol torn down by a
        # server shutdown): the connection went away under us.
        return DatabaseUnavailable(_describe(exc))
    if isinstance(exc, sqlite3.IntegrityError):
        return ConstraintViolation(_describe(exc))
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        if any(marker in text for marker in _SQLITE_UNAVAILABLE_TEXT):
            return DatabaseUnavailable(_describe(exc))
        return DatabaseError(_describe(exc))
    if isinstance(exc, (sqlite3.Error, ValueError)) and "closed" in str(exc).lower():
        return DatabaseUnavailable(_describe(exc))
    return DatabaseError(_describe(exc))


def is_connection_lost(exc: BaseException) -> bool:
    """True for the P1001 class: the same call may succeed once the database is back."""
    return isinstance(classify(exc), DatabaseUnavailable)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"
