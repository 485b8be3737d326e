"""The objects one hookgate process shares, built in the app's lifespan and passed explicitly."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from clients import Clients, open_clients
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.workspaces import WorkspaceCache
from sql import Database, connect
from sql.migrations import discover


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass(slots=True)
class Runtime:
    settings: Settings
    db: Database
    metrics: Metrics
    workspaces: WorkspaceCache
    clients: Clients | None = None
    clock: Callable[[], dt.datetime] = utc_now


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Connect and migrate the database and build the shared objects; close them at the end.
    The app's lifespan and ``hookgate worker`` both start here."""
    db = await connect(
        settings.database_url,
        pool_size=settings.database_pool_size,
        pgbouncer=settings.database_pgbouncer,
        timeout_s=settings.database_timeout_s,
    )
    try:
        await db.apply_migrations(discover(db.dialect))
        async with open_clients(settings, db) as clients:
            yield Runtime(
                settings=settings,
                db=db,
                metrics=Metrics(),
                workspaces=WorkspaceCache(db, settings.workspace_cache_ttl_s),
                clients=clients,
            )
    finally:
        await db.close()
