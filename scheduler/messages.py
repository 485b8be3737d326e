"""The messages post-process jobs work on, loaded together.

Runs that start side by side (a claim starts up to ``JOB_CONCURRENCY`` of them) each need their
message with its lead and draft (``post_process_messages``).  ``message_of`` loads it with every
other one asked for meanwhile, one statement for all (``scheduler.coalesce``); what a run reads
is still committed before it asked.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable

from scheduler.coalesce import Coalescing
from sql import Database, DatabaseUnavailable, Row, json_rows

_LOADERS: weakref.WeakKeyDictionary[Database, Coalescing[int, Row]] = weakref.WeakKeyDictionary()


async def message_of(db: Database, message_id: int) -> Row | None:
    """The message with what its post-process job needs, or None when there is no such row."""
    loader = _LOADERS.get(db)
    if loader is None:
        loader = _LOADERS[db] = Coalescing(_loading(weakref.ref(db)))
    return await loader.get(message_id)


def _loading(database: weakref.ref[Database]) -> Callable[[list[int]], Awaitable[dict[int, Row]]]:
    # A weak reference: the loader, the value of a weak-keyed entry, must not keep its key alive.
    async def load(ids: list[int]) -> dict[int, Row]:
        db = database()
        if db is None:
            raise DatabaseUnavailable("the database was closed")
        rows = await db.fetch_all("post_process_messages", ids=json_rows(ids))
        return {int(row["id"]): row for row in rows}

    return load
