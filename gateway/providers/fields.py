"""Tolerant field readers shared by the parsers: numbers as strings, missing optional fields,
legacy names.  Each raises ``ParseError`` naming the field when a required one is unusable."""

from __future__ import annotations

import datetime as dt
from typing import Any

from gateway.ingest import ParseError


def obj(parent: Any, key: str, *, where: str = "") -> dict[str, Any]:
    """A required nested object."""
    value = parent.get(key) if isinstance(parent, dict) else None
    if not isinstance(value, dict):
        raise ParseError(f"{where}{key} must be an object")
    return value


def opt_obj(parent: Any, key: str) -> dict[str, Any]:
    """An optional nested object ({} when absent or not an object)."""
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, dict) else {}


def opt_text(parent: Any, *keys: str) -> str | None:
    """The first of ``keys`` holding a non-empty string or number, as stripped text."""
    if not isinstance(parent, dict):
        return None
    for key in keys:
        value = parent.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            return str(int(value)) if float(value).is_integer() else str(value)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def text(parent: Any, *keys: str, where: str = "") -> str:
    """A required identifier or text field (a number is accepted and turned into text)."""
    value = opt_text(parent, *keys)
    if value is None:
        raise ParseError(f"{where}{' or '.join(keys)} is missing or not a string/number")
    return value


def opt_bool(parent: Any, key: str) -> bool:
    value = parent.get(key) if isinstance(parent, dict) else None
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value) if isinstance(value, (bool, int)) else False


def email(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    return value if "@" in value else None


def timestamp(value: Any) -> dt.datetime | None:
    """An ISO-8601 string or a Unix epoch (seconds or milliseconds) as an aware UTC datetime;
    None when absent or unreadable (a timestamp is never worth rejecting a message for)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        if isinstance(value, (int, float)) or (isinstance(value, str) and value.isdigit()):
            number = float(value)
            if number > 1e11:
                number /= 1000
            return dt.datetime.fromtimestamp(number, dt.UTC)
        if isinstance(value, str):
            parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return parsed.astimezone(dt.UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None
