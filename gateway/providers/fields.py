"""Tolerant field readers shared by the parsers: numbers as strings, missing optional fields,
legacy names.  Each raises ``ParseError`` naming the field when a required one is unusable."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from email.utils import parseaddr
from typing import Any

import orjson

from gateway.events import ParseError


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


def _lookup(parent: dict[str, Any], key: str) -> Any:
    """``parent[key]``, where a dotted key that is not itself present walks nested objects."""
    if key in parent or "." not in key:
        return parent.get(key)
    value: Any = parent
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


_LOOSE_KEY = re.compile(r"[\s_\-]")


def loose(parent: dict[str, Any]) -> dict[str, Any]:
    """``parent`` with its keys lower-cased and without spaces, ``_`` or ``-``, for fields whose
    spelling the sender chose (``First_name``, ``firstName`` and ``first name`` are all
    ``firstname``).  Where two keys read alike, the first wins."""
    found: dict[str, Any] = {}
    for key, value in parent.items():
        found.setdefault(_LOOSE_KEY.sub("", key).lower(), value)
    return found


def opt_text(parent: Any, *keys: str) -> str | None:
    """The first of ``keys`` (dotted for nested: ``reply_message.message_id``) holding a
    non-empty string or number, as stripped text without NUL characters."""
    if not isinstance(parent, dict):
        return None
    for key in keys:
        value = _lookup(parent, key)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            return str(int(value)) if float(value).is_integer() else str(value)
        if isinstance(value, str):
            # NUL is valid JSON (\u0000) but no PostgreSQL text can hold it.
            value = value.replace("\x00", "").strip()
            if value:
                return value
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


# A bare address of dot-separated ASCII atoms, as nearly every provider sends it: ``parseaddr``
# returns such a string unchanged, so it is not run (it costs more than the rest of a parser).
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+\-]+(?:\.[A-Za-z0-9_+\-]+)*@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*"
)


def email(value: str | None) -> str | None:
    """A lower-cased address, from ``a@b.c`` or ``Name <a@b.c>``; None if it is not one."""
    if value is None:
        return None
    if _PLAIN_ADDRESS.fullmatch(value):
        return value.lower()
    address = parseaddr(value)[1].strip().lower()
    return address if "@" in address.strip("@") and " " not in address else None


_PHONE_PUNCTUATION = re.compile(r"[\s().\-/]")


def phone(value: str | None) -> str | None:
    """E.164 (``+15555550142``) from the usual spellings: spaces, dashes, dots and brackets
    dropped, a ``00`` prefix read as ``+``, ten bare digits read as a North American number
    (GoHighLevel's home market).  None when it cannot be a phone number."""
    if value is None:
        return None
    digits = _PHONE_PUNCTUATION.sub("", value)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if not digits.startswith("+"):
        digits = ("+1" if len(digits) == 10 else "+") + digits
    number = digits[1:]
    if not (number.isascii() and number.isdigit() and 8 <= len(number) <= 15):
        return None
    return None if number[0] == "0" else "+" + number


def normalised_body(value: str | None) -> str:
    """Unicode NFC, whitespace runs collapsed to one space, trimmed: the same text however a
    provider re-encodes or re-wraps it."""
    return " ".join(unicodedata.normalize("NFC", value or "").split())


def digest(*parts: str | None) -> str:
    """SHA-256 hex of the parts, encoded unambiguously (no separator can be forged)."""
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()


def name_parts(full_name: str | None) -> tuple[str | None, str | None]:
    """``"Jordan Lee"`` -> ``("Jordan", "Lee")``; the last name takes everything after the first."""
    first, _, last = (full_name or "").strip().partition(" ")
    return first or None, last.strip() or None


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


def opt_timestamp(parent: Any, *keys: str) -> dt.datetime | None:
    """The first of ``keys`` (dotted for nested) holding a readable time."""
    for key in keys:
        value = timestamp(_lookup(parent, key)) if isinstance(parent, dict) else None
        if value is not None:
            return value
    return None
