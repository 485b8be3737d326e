"""The workspace cache in front of the webhook path: unknown ids are cached too (bounded and
short-lived), so made-up ids cannot cost a query per request; on both backends."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from typing import Any

from gateway.workspaces import WorkspaceCache, WorkspaceOptions, create_workspace, new_workspace_id
from sql import Database, Row
from tests.test_database import workspace_params


class CountedLookups:
    """The real database, counting the workspace lookups that reach it."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.lookups: Counter[str] = Counter()

    async def fetch_one(self, query: str, /, **params: Any) -> Row | None:
        if query == "get_workspace":
            self.lookups[params["id"]] += 1
        return await self._db.fetch_one(query, **params)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def random_ids(n: int) -> list[str]:
    return [f"ws_{secrets.token_hex(8)}" for _ in range(n)]


async def test_a_flood_of_made_up_ids_costs_one_query_per_id_per_ttl(db: Database) -> None:
    counted, clock = CountedLookups(db), Clock()
    cache = WorkspaceCache(counted, ttl_s=5, clock=clock)  # type: ignore[arg-type]
    made_up = random_ids(300)
    flood = made_up * 5  # every id five times, all at once
    assert await asyncio.gather(*(cache.get(i) for i in flood)) == [None] * len(flood)
    assert counted.lookups == Counter(made_up)  # once each, the copies shared its query

    clock.now += 4.9
    assert await asyncio.gather(*(cache.get(i) for i in made_up)) == [None] * len(made_up)
    assert counted.lookups == Counter(made_up)  # still within the TTL: no query at all
    clock.now += 0.2
    await asyncio.gather(*(cache.get(i) for i in made_up))
    assert counted.lookups == Counter({i: 2 for i in made_up})  # one more each per TTL


async def test_a_workspace_created_after_its_id_was_asked_for_is_found_within_the_ttl(
    db: Database,
) -> None:
    clock = Clock()
    cache = WorkspaceCache(db, ttl_s=5, clock=clock)
    workspace_id = new_workspace_id()
    assert await cache.get(workspace_id) is None
    await db.execute("insert_workspace", **workspace_params(workspace_id))
    clock.now += 5.01
    found = await cache.get(workspace_id)
    assert found is not None and found["id"] == workspace_id


async def test_unknown_ids_stay_bounded_and_never_push_out_a_real_workspace(
    db: Database,
) -> None:
    counted, clock = CountedLookups(db), Clock()
    cache = WorkspaceCache(counted, ttl_s=5, clock=clock, max_ids=50)  # type: ignore[arg-type]
    real = await create_workspace(db, "Acme", WorkspaceOptions())
    assert (await cache.get(real.id) or {}).get("id") == real.id
    for batch in range(10):  # 500 made-up ids, 50 at a time
        await asyncio.gather(*(cache.get(i) for i in random_ids(50)))
        assert len(cache) <= 50 + 1, f"after batch {batch}"
    assert (await cache.get(real.id) or {}).get("id") == real.id
    assert counted.lookups[real.id] == 1  # still cached: the flood did not evict it


async def test_a_cancelled_caller_does_not_cancel_the_lookup_others_share(db: Database) -> None:
    counted = CountedLookups(db)
    cache = WorkspaceCache(counted, ttl_s=5)  # type: ignore[arg-type]
    real = await create_workspace(db, "Acme", WorkspaceOptions())
    first = asyncio.create_task(cache.get(real.id))
    second = asyncio.create_task(cache.get(real.id))
    await asyncio.sleep(0)  # both wait on the one lookup
    first.cancel()
    found = await second
    assert found is not None and found["id"] == real.id
    assert counted.lookups[real.id] == 1
