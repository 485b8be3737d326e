"""The objects one hookgate process shares, built in the app's lifespan and passed explicitly."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from clients import Clients, open_clients
from gateway.delivery_stats import DeliveryStats
from gateway.ingest_group import open_groups
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.workspaces import WorkspaceCache
from sql import Database, connect
from sql.migrations import discover


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def no_wakeup() -> None:
    """What ``Runtime.job_due`` does without an in-process scheduler: nothing (a worker
    replica finds the job at its next poll)."""


@dataclasses.dataclass(slots=True)
class Runtime:
    settings: Settings
    db: Database
    metrics: Metrics
    workspaces: WorkspaceCache
    clients: Clients | None = None
    # Deliveries answered and not yet written to delivery_stats (``gateway.delivery_stats``).
    delivery_stats: DeliveryStats = dataclasses.field(default_factory=DeliveryStats)
    clock: Callable[[], dt.datetime] = utc_now
    # Called after a commit that made a job due; the in-process scheduler sets it to wake its
    # runner at once instead of at the next poll (a process without one keeps the no-op).
    job_due: Callable[[], None] = no_wakeup
    # When this process last marked each (workspace id, notice) (``gateway.notices``).
    notice_marks: dict[tuple[str, str], dt.datetime] = dataclasses.field(default_factory=dict)


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Connect and migrate the database and build the shared objects; close them at the end.
    The app's lifespan and ``hookgate worker`` both start here."""
    db = await connect(
        settings.database_url,
        pool_size=settings.database_pool_size,
        pgbouncer=settings.database_pgbouncer,
        timeout_s=settings.database_timeout_s,
        sqlite_synchronous=settings.database_sqlite_synchronous,
    )
    try:
        await db.apply_migrations(discover(db.dialect))
        metrics = Metrics()
        stats = DeliveryStats(
            settings.delivery_stats_max_pending_minutes, metrics.delivery_stats_dropped.inc
        )
        async with open_clients(settings, db) as clients:
            runtime = Runtime(
                settings=settings,
                db=db,
                metrics=metrics,
                workspaces=WorkspaceCache(db, settings.workspace_cache_ttl_s),
                clients=clients,
                delivery_stats=stats,
            )
            # Ingest groups wake the runner once per group (``job_due`` is set by the scheduler)
            # and write the delivery stats pending in their transactions.
            groups = open_groups(db, settings, metrics, lambda: runtime.job_due(), stats)
            try:
                yield runtime
            finally:
                await groups.drain()
    finally:
        await db.close()
