"""The ``unipile_health`` cron: is each workspace's LinkedIn account still connected?

Every ``UNIPILE_HEALTH_INTERVAL_S`` (default 900) one replica checks the account of every
workspace that has a ``unipile_account_id`` through the Unipile client, at most
``CHECK_CONCURRENCY`` at a time.  A connected or disconnected answer goes through
``record_integration_status`` (the same function the ``AccountStatus`` webhook uses): it writes
``integration_health`` and counts a repeat of a disconnection already alerted today.  An answer
that says nothing about the account (timeout, connection error, a 5xx, a bad API key) changes
nothing: it is logged and counted as ``unknown``.  Then the alert sender runs
(``scheduler.alerts``): one Slack alert per disconnected workspace per day, one "reconnected"
message when an account comes back.
"""

from __future__ import annotations

import asyncio
import logging

from clients.unipile import AccountCheck
from gateway.integrations import record_integration_status
from gateway.runtime import Runtime
from scheduler.alerts import send_due_alerts
from scheduler.crons import CronResult
from sql import Row

log = logging.getLogger("hookgate.unipile_health")

INTEGRATION = "unipile"
CHECK_CONCURRENCY = 4
MAX_WORKSPACES = 10_000


async def check_unipile_health(runtime: Runtime) -> CronResult:
    """The cron's function."""
    clients = runtime.clients
    if clients is None or not clients.unipile.enabled:
        return CronResult(
            "skipped", {"reason": "Unipile is off (UNIPILE_BASE_URL or API key unset)"}
        )
    workspaces = await runtime.db.fetch_all("unipile_workspaces", limit=MAX_WORKSPACES)
    slots = asyncio.Semaphore(CHECK_CONCURRENCY)

    async def check(workspace: Row) -> AccountCheck:
        async with slots:
            result = await clients.unipile.check_account(workspace["unipile_account_id"])
        if result.error_class is not None:
            log.warning(
                "unipile account state unknown; health left as it was",
                extra={
                    "workspace_id": workspace["id"],
                    "error_class": result.error_class,
                    "error": result.error,
                },
            )
            return result
        if result.own_id is not None:  # who the owner is, for payloads that do not say
            await runtime.db.execute(
                "learn_unipile_own_id", id=workspace["id"], own_id=result.own_id
            )
        await record_integration_status(
            runtime.db,
            workspace["id"],
            INTEGRATION,
            result.connected,
            result.reason,
            runtime.clock(),
        )
        return result

    results = await asyncio.gather(*(check(w) for w in workspaces))
    alerts = await send_due_alerts(runtime)
    unknown = sum(1 for r in results if r.error_class is not None)
    return CronResult(
        "ok",
        {
            "checked": len(results),
            "disconnected": sum(1 for r in results if r.error_class is None and not r.connected),
            "unknown": unknown,
            "alerts_sent": alerts.sent,
            "alerts_failed": alerts.failed,
        },
    )
