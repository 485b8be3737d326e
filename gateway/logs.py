"""Logs as one JSON object per line, with secrets — and the row values a database error quotes —
masked wherever they might slip in."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import sys
from typing import Any

import orjson

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}
_SECRET_KEYS = re.compile(r"token|secret|api_key|apikey|authorization|password|signature", re.I)
_SECRET_IN_TEXT = re.compile(
    r"((?:token|secret|api_key|apikey|password)=|Bearer\s+)([^\s&\"']+)", re.I
)


# The values PostgreSQL quotes in an error's DETAIL: "Key (workspace_id, phone)=(ws_…, +1555…)
# already exists.", "Failing row contains (…)." — a lead's email or phone, a message's body.  The
# value runs to the line's last ")", so a value holding parentheses is masked whole.
_ROW_VALUES_IN_TEXT = re.compile(
    r"(\bKey \([^)]*\)=\(|\bFailing row contains \().*?(\)[^()]*)$", re.M
)


# What each pattern needs to match at all, checked first: most log text holds neither, and a
# substring test costs a fraction of a substitution (the dedupe line of every duplicate delivery
# masks half a dozen strings).
_BEARER = re.compile(r"Bearer\s", re.I)


def mask_text(text: str) -> str:
    if "=" in text or _BEARER.search(text):
        text = _SECRET_IN_TEXT.sub(r"\1***", text)
    if "Key (" in text or "Failing row contains (" in text:
        text = _ROW_VALUES_IN_TEXT.sub(r"\1***\2", text)
    return text


@functools.lru_cache(maxsize=512)
def _secret_key(key: str) -> bool:
    """Whether a field of this name holds a secret (field names are few: the answer is kept)."""
    return _SECRET_KEYS.search(key) is not None


def _mask(key: str, value: Any) -> Any:
    if _secret_key(key):
        return "***"
    if isinstance(value, str):
        return mask_text(value)
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask_text(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = _mask(key, value)
        if record.exc_info:
            entry["exc"] = mask_text(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class StderrHandler(logging.StreamHandler[Any]):
    """Writes each record to ``sys.stderr`` as it is when the record is emitted, not as it was
    when logging was configured (as ``logging.lastResort`` does): a stream swapped out and
    closed since, such as pytest's capture of an earlier test, is never written to."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """``StreamHandler.__init__`` assigns the stream: there is nothing to keep."""


def configure(level: str) -> None:
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
