"""Named queries, loaded once at import from the ``.sql`` files of this package.

A file holds statements, each introduced by a ``-- name: query_name`` line.  Parameters are
written ``:name``.  Queries in ``sql/queries/`` serve both dialects; ``sql/<dialect>/queries/``
holds the statements that must differ.  A name is defined once per dialect.

A statement that differs only in the column it keys on is written once as a template: its name
holds ``{key}`` and a ``-- keys: a, b`` line lists the columns; loading makes one named query
per column (``find_leads_by_email``, …) with ``{key}`` replaced in the name and the SQL (a
column name cannot be a parameter).
"""

from __future__ import annotations

import dataclasses
import re
from importlib import resources

from sql.errors import UnknownQuery

DIALECTS = ("postgres", "sqlite")

_NAME_LINE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*(?:\{key\}[a-z0-9_]*)?)\s*$", re.MULTILINE)
_KEYS_LINE = re.compile(r"^--\s*keys:\s*(.+?)\s*$", re.MULTILINE)
_WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)
# A '…' literal (left alone) or a ``:name`` parameter that is not part of a ``::type`` cast.
_PARAM = re.compile(r"'(?:[^']|'')*'|(?<![:\w]):([a-z_][a-z0-9_]*)")


@dataclasses.dataclass(frozen=True, slots=True)
class Query:
    name: str
    sql: str  # as written, with :name parameters (SQLite binds these natively)
    positional_sql: str  # the same with $1, $2, … (asyncpg)
    params: tuple[str, ...]  # parameter names in $n order
    readonly: bool  # a plain SELECT
    returns_rows: bool  # a SELECT or a statement with RETURNING


def parse(text: str) -> dict[str, str]:
    """Split one file into ``{name: statement}``."""
    parts = _NAME_LINE.split(text)
    statements: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [ln for ln in body.splitlines() if not ln.lstrip().startswith("--")]
        sql = "\n".join(lines).strip().rstrip(";").strip()
        for each, each_sql in _expand(name, body, sql):
            if each in statements:
                raise ValueError(f"query {each!r} is defined twice in one file")
            statements[each] = each_sql
    return statements


def _expand(name: str, body: str, sql: str) -> list[tuple[str, str]]:
    if "{key}" not in name:
        return [(name, sql)]
    keys = _KEYS_LINE.search(body)
    if keys is None:
        raise ValueError(f"query template {name!r} has no '-- keys:' line")
    columns = [column.strip() for column in keys.group(1).split(",")]
    return [(name.replace("{key}", c), sql.replace("{key}", c)) for c in columns]


def compile_query(name: str, sql: str) -> Query:
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        param = match.group(1)
        if param is None:
            return match.group(0)
        if param not in order:
            order.append(param)
        return f"${order.index(param) + 1}"

    positional = _PARAM.sub(number, sql)
    first_word = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    readonly = first_word in ("SELECT", "WITH") and not _WRITES.search(sql)
    returns_rows = readonly or bool(_RETURNING.search(sql))
    return Query(name, sql, positional, tuple(order), readonly, returns_rows)


def _load(dialect: str) -> dict[str, Query]:
    root = resources.files("sql")
    queries: dict[str, Query] = {}
    for folder in (root / "queries", root / dialect / "queries"):
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".sql"):
                continue
            for name, sql in parse(entry.read_text(encoding="utf-8")).items():
                if name in queries:
                    raise ValueError(f"query {name!r} is defined twice for {dialect}")
                queries[name] = compile_query(name, sql)
    return queries


QUERIES: dict[str, dict[str, Query]] = {dialect: _load(dialect) for dialect in DIALECTS}


def get(dialect: str, name: str) -> Query:
    try:
        return QUERIES[dialect][name]
    except KeyError:
        raise UnknownQuery(f"no query named {name!r} for {dialect}") from None
