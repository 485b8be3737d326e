"""The database port: named queries over asyncpg (PostgreSQL) and aiosqlite (SQLite)."""

from sql.database import (
    Connection,
    Database,
    Row,
    connect,
    database_now,
    json_rows,
    timestamp_text,
)
from sql.errors import ConstraintViolation, DatabaseError, DatabaseUnavailable, is_connection_lost

__all__ = [
    "Connection",
    "ConstraintViolation",
    "Database",
    "DatabaseError",
    "DatabaseUnavailable",
    "Row",
    "connect",
    "database_now",
    "is_connection_lost",
    "json_rows",
    "timestamp_text",
]
