"""Schema migrations: ``sql/<dialect>/NNN_name.sql``, applied in order, each exactly once.

The adapters record applied versions in ``schema_migrations`` and serialise concurrent runs
(PostgreSQL: an advisory lock; SQLite: one ``BEGIN IMMEDIATE`` transaction).
"""

from __future__ import annotations

import dataclasses
import re
from importlib import resources

_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    script: str


def discover(dialect: str) -> list[Migration]:
    folder = resources.files("sql") / dialect
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(
                Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two {dialect} migrations share a version number: {versions}")
    return found
