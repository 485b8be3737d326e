"""The ``unipile_health`` cron: is each workspace's LinkedIn account still connected?

Every ``UNIPILE_HEALTH_INTERVAL_S`` (default 900) one replica checks the account of every
workspace that has a ``unipile_account_id`` through the Unipile client, at most
``CHECK_CONCURRENCY`` at a time.  A connected or disconnected answer goes through
``record_integration_status`` (the same function the ``AccountStatus`` webhook uses): it writes
``integration_health`` and counts a repeat of a disconnection already alerted today.  An answer
that says nothing about the account (timeout, connection error, a 5xx, a bad API key) changes
nothing: it is logged and counted as ``unknown``.  Each workspace's check is isolated: an error
in one (the database failing its write, say) is logged and counted as ``errors`` while the others
complete, and all of them run inside a task group, so none outlives the run.  Then the alert
sender runs (``scheduler.alerts``): one Slack alert per disconnected workspace per day, one
"reconnected" message when an account comes back.
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
    unipile = clients.unipile
    workspaces = await runtime.db.fetch_all("unipile_workspaces", limit=MAX_WORKSPACES)
    slots = asyncio.Semaphore(CHECK_CONCURRENCY)

    async def check(workspace: Row) -> AccountCheck | None:
        """One workspace's check; ``None`` when it failed (logged), so that one workspace's
        error never stops the others."""
        try:
            async with slots:
                result = await unipile.check_account(workspace["unipile_account_id"])
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
        except Exception:
            log.exception(
                "unipile health check of a workspace failed; the others go on",
                extra={"workspace_id": workspace["id"]},
            )
            return None

    # A task group: every check has ended (or been cancelled with the run) when it exits.
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(check(w)) for w in workspaces]
    results = [task.result() for task in tasks]
    checked = [r for r in results if r is not None]
    alerts = await send_due_alerts(runtime)
    return CronResult(
        "ok",
        {
            "checked": len(checked),
            "disconnected": sum(1 for r in checked if r.error_class is None and not r.connected),
            "unknown": sum(1 for r in checked if r.error_class is not None),
            "errors": len(results) - len(checked),
            "alerts_sent": alerts.sent,
            "alerts_not_sent": alerts.not_sent,
            "alerts_unknown": alerts.unknown,
        },
    )
